package raftstore

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkPut measures puts of 256-byte values over 10k keys through a
// 3-member in-process cluster, 16 clients spread over all members. It is for
// profiling (-cpuprofile); the comparison with etcd is `synod bench kv`.
func BenchmarkPut(b *testing.B) {
	c := newTestCluster(b, 3, nil)
	clis := []*clientv3.Client{c.client(0), c.client(1), c.client(2)}
	val := strings.Repeat("v", 256)
	var n atomic.Int64
	b.SetParallelism(8) // 16 goroutines on 2 cores
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		cli := clis[n.Add(1)%3]
		for pb.Next() {
			k := n.Add(1)
			if _, err := cli.Put(context.Background(), fmt.Sprintf("bench/%08d", k%10000), val); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
