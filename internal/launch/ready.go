package launch

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// WaitReady waits until every master answers a linearizable Get (as etcdctl
// endpoint health does), which needs an elected leader and a quorum behind
// it. It is bounded by ctx only; the error names the masters not yet ready.
func (c *Cluster) WaitReady(ctx context.Context) error {
	ms := c.Masters()
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := waitHealthy(ctx, m.ClientURL); err != nil {
				errs[i] = fmt.Errorf("%s (%s): %w", m.Name, m.ClientURL, err)
			}
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// waitHealthy polls one endpoint until a Get succeeds or ctx ends; the error
// is the last Get's if there was one.
func waitHealthy(ctx context.Context, endpoint string) error {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint},
		DialTimeout: time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return err
	}
	defer cli.Close()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		gctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err = cli.Get(gctx, "health")
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}
