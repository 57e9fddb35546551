package chaos

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcdHealthy reports nil when every member answers a linearizable read
// through its pinned client and all report the same leader; up(i), when
// not nil, says whether member i is meant to be running at all. Shared by
// the local and the remote (Ansible-deployed) cluster.
func etcdHealthy(ctx context.Context, clients []*clientv3.Client, endpoints []string, name func(int) string, up func(int) bool) error {
	errs := make([]error, len(clients))
	leaders := make([]uint64, len(clients))
	var wg sync.WaitGroup
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if up != nil && !up(i) {
				errs[i] = fmt.Errorf("%s is not running", name(i))
				return
			}
			gctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if _, err := clients[i].Get(gctx, "chaos-health"); err != nil {
				errs[i] = fmt.Errorf("%s: %w", name(i), err)
				return
			}
			st, err := clients[i].Status(gctx, endpoints[i])
			if err != nil {
				errs[i] = fmt.Errorf("%s: status: %w", name(i), err)
				return
			}
			leaders[i] = st.Leader
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i := range leaders {
		if leaders[i] == 0 || leaders[i] != leaders[0] {
			return fmt.Errorf("masters disagree on the leader: %x", leaders)
		}
	}
	return nil
}

// waitHealthy polls healthy every interval until it holds or timeout passes.
func waitHealthy(ctx context.Context, timeout, interval time.Duration, healthy func(context.Context) error) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		err := healthy(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("chaos: cluster not healthy after %s: %w", timeout, err)
		case <-tick.C:
		}
	}
}
