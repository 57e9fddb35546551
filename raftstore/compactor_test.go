package raftstore

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestParseCompaction(t *testing.T) {
	for _, tc := range []struct {
		mode, retention string
		want            compactionPolicy
		bad             bool
	}{
		{"", "", compactionPolicy{}, false},
		{"periodic", "1", compactionPolicy{period: time.Hour}, false},
		{"periodic", "30m", compactionPolicy{period: 30 * time.Minute}, false},
		{"revision", "1000", compactionPolicy{revisions: 1000}, false},
		{"revision", "10m", compactionPolicy{}, true},
		{"periodic", "soon", compactionPolicy{}, true},
		{"weekly", "1", compactionPolicy{}, true},
	} {
		got, err := parseCompaction(tc.mode, tc.retention)
		if (err != nil) != tc.bad || got != tc.want {
			t.Errorf("parseCompaction(%q, %q) = %+v, %v", tc.mode, tc.retention, got, err)
		}
	}
}

func TestAutoCompactionByRevision(t *testing.T) {
	c := newTestCluster(t, 3, func(cfg *Config) {
		cfg.AutoCompactionMode, cfg.AutoCompactionRetention = CompactionRevision, "10"
	})
	cli := c.client(1)
	ctx := ctxT(t, 30*time.Second)
	var last int64
	for i := 0; i < 30; i++ {
		r, err := cli.Put(ctx, "ac", fmt.Sprint(i))
		if err != nil {
			t.Fatal(err)
		}
		last = r.Header.Revision
	}
	testPoll(t, 15*time.Second, func() error {
		_, err := cli.Get(ctx, "ac", clientv3.WithRev(last-15))
		if !errors.Is(err, rpctypes.ErrCompacted) {
			return fmt.Errorf("revision %d not compacted yet (err %v)", last-15, err)
		}
		return nil
	})
	if _, err := cli.Get(ctx, "ac", clientv3.WithRev(last-5)); err != nil {
		t.Fatalf("revision within the retention was compacted: %v", err)
	}
}
