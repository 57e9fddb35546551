package bench

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// driven is what drive measured: every successful request's latency,
// sorted, and the failures.
type driven struct {
	sorted   []time.Duration
	errors   int
	firstErr error
	elapsed  time.Duration
}

// drive runs op on workers goroutines until duration has passed (ops == 0)
// or ops requests were issued. Each call gets a context bounded by
// opTimeout. A request in flight when the duration ends is let finish and
// counted (as etcd's benchmark does): cutting it off would turn it into a
// spurious error, since the server sees the deadline too and may answer
// "request timed out" first. Both benchmarks share this loop.
func drive(ctx context.Context, workers int, duration time.Duration, ops int, opTimeout time.Duration,
	op func(ctx context.Context, worker int) error) driven {
	more := func() bool { return ctx.Err() == nil }
	if ops == 0 {
		deadline := time.Now().Add(duration)
		more = func() bool { return ctx.Err() == nil && time.Now().Before(deadline) }
	}
	var (
		issued   atomic.Int64
		errCount atomic.Int64
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	samples := make([][]time.Duration, workers)
	start := time.Now()
	for i := range workers {
		wg.Go(func() {
			lat := make([]time.Duration, 0, 1024)
			for more() {
				if ops > 0 && issued.Add(1) > int64(ops) {
					break
				}
				octx, cancel := context.WithTimeout(ctx, opTimeout)
				t0 := time.Now()
				err := op(octx, i)
				d := time.Since(t0)
				cancel()
				if err != nil {
					if ctx.Err() != nil {
						break // interrupted: neither an op nor an error
					}
					errCount.Add(1)
					errOnce.Do(func() { firstErr = err })
					time.Sleep(errorBackoff) // don't spin on a dead endpoint
					continue
				}
				lat = append(lat, d)
			}
			samples[i] = lat
		})
	}
	wg.Wait()
	all := slices.Concat(samples...)
	slices.Sort(all)
	return driven{sorted: all, errors: int(errCount.Load()), firstErr: firstErr, elapsed: time.Since(start)}
}

// latencies returns p50, p99 and max of sorted samples (zero when empty).
func latencies(sorted []time.Duration) (p50, p99, max time.Duration) {
	if len(sorted) == 0 {
		return 0, 0, 0
	}
	return Percentile(sorted, 50), Percentile(sorted, 99), sorted[len(sorted)-1]
}
