package raftstore

import (
	"context"
	"fmt"
	"math"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

// registerOp is one put or get of one key, for porcupine.
type registerOp struct {
	key   string
	put   bool
	value string // put: the value written; get: the value read ("" = absent)
}

// registerModel is a per-key register: a put sets it, a get must read it.
var registerModel = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(registerOp).key
			if _, ok := byKey[k]; !ok {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		var out [][]porcupine.Operation
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		in := input.(registerOp)
		if in.put {
			return true, in.value
		}
		return output.(registerOp).value == state.(string), state
	},
	DescribeOperation: func(input, output any) string {
		in := input.(registerOp)
		if in.put {
			return fmt.Sprintf("put(%s, %s)", in.key, in.value)
		}
		return fmt.Sprintf("get(%s) -> %q", in.key, output.(registerOp).value)
	},
}

// Concurrent puts and linearizable gets on a few keys, through every member,
// while the leader and then a follower are stopped and restarted: the
// history must be linearizable. Puts that failed may or may not have taken
// effect, so they stay open until the end of the history.
func TestLinearizableUnderMemberRestarts(t *testing.T) {
	c := newTestCluster(t, 3, nil)
	ctx := ctxT(t, 90*time.Second)
	start := time.Now()
	now := func() int64 { return int64(time.Since(start)) }
	var mu sync.Mutex
	var history []porcupine.Operation
	record := func(op porcupine.Operation) {
		mu.Lock()
		history = append(history, op)
		mu.Unlock()
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	const clients = 6
	for w := 0; w < clients; w++ {
		cli := c.client(0, 1, 2)
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("lin/%d", i%3)
				rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
				call := now()
				if i%2 == 0 {
					val := fmt.Sprintf("%d-%d", w, i)
					_, err := cli.Put(rctx, key, val)
					ret := now()
					if err != nil {
						ret = math.MaxInt64
					}
					record(porcupine.Operation{ClientId: w, Input: registerOp{key: key, put: true, value: val}, Call: call, Output: registerOp{}, Return: ret})
				} else {
					g, err := cli.Get(rctx, key)
					ret := now()
					if err == nil {
						v := ""
						if len(g.Kvs) == 1 {
							v = string(g.Kvs[0].Value)
						}
						record(porcupine.Operation{ClientId: w, Input: registerOp{key: key}, Call: call, Output: registerOp{value: v}, Return: ret})
					}
				}
				cancel()
			}
		}(w)
	}
	pause := func() { time.Sleep(700 * time.Millisecond) } // let the workload run between faults
	pause()
	leader := c.waitLeader(10 * time.Second)
	c.stop(leader)
	pause()
	c.start(leader)
	pause()
	follower := (c.waitLeader(10*time.Second) + 1) % 3
	c.stop(follower)
	pause()
	c.start(follower)
	pause()
	close(stop)
	wg.Wait()

	res, info := porcupine.CheckOperationsVerbose(registerModel, history, 60*time.Second)
	if res != porcupine.Ok {
		path := t.TempDir() + "/linearizability.html"
		porcupine.VisualizePath(registerModel, info, path)
		t.Fatalf("history of %d operations is not linearizable (%v); visualization: %s", len(history), res, path)
	}
	t.Logf("%d operations, linearizable", len(history))
}
