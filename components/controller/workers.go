package controller

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/workqueue"
)

// ErrRetry marks a sync error that is expected and only needs a retry (for
// example: the cache is behind a write this controller made). It is logged
// at debug level; wrap it with fmt.Errorf("...: %w", ErrRetry).
var ErrRetry = errors.New("retry")

// RunWorkers is the loop every queue-driven controller runs: it waits for
// the informers in synced, then runs workers goroutines that take keys from
// queue and call sync, requeueing with the queue's rate limit on error,
// until ctx ends. It returns after every worker has stopped. name is used
// in logs ("replicaset", "deployment", ...).
func RunWorkers(ctx context.Context, log *slog.Logger, name string, queue workqueue.TypedRateLimitingInterface[string], workers int,
	synced []cache.InformerSynced, syncKey func(ctx context.Context, key string) error) {
	defer queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	log.Info("controller running", "controller", name, "workers", workers)
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Go(func() {
			for processNext(ctx, log, name, queue, syncKey) {
			}
		})
	}
	<-ctx.Done()
	queue.ShutDown()
	wg.Wait()
	log.Info("controller stopped", "controller", name)
}

func processNext(ctx context.Context, log *slog.Logger, name string, queue workqueue.TypedRateLimitingInterface[string], syncKey func(ctx context.Context, key string) error) bool {
	key, quit := queue.Get()
	if quit {
		return false
	}
	defer queue.Done(key)
	if ctx.Err() != nil {
		return true // the term is over: drain without acting
	}
	err := syncKey(ctx, key)
	if err == nil {
		queue.Forget(key)
		return true
	}
	if ctx.Err() == nil {
		level := slog.LevelWarn
		if errors.Is(err, ErrRetry) || apierrors.IsConflict(err) {
			level = slog.LevelDebug // a stale cache; the requeue fixes it
		}
		log.Log(ctx, level, "sync failed; retrying", "controller", name, "key", key, "err", err)
	}
	queue.AddRateLimited(key)
	return true
}
