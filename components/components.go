package components

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"

	"synod/components/controller"
	"synod/components/controllers"
	"synod/components/scheduler"
	"synod/leader"
)

// Lease names, as Kubernetes names them.
const (
	SchedulerLease         = "kube-scheduler"
	ControllerManagerLease = "kube-controller-manager"
)

// Config describes the components of one master.
type Config struct {
	// RestConfig reaches the Kubernetes API (the master's own, over
	// loopback). It must not be rate limited by the caller's other users.
	RestConfig *rest.Config
	// Identity is the lease holder identity: master name + "_" + pid.
	Identity string

	LeaseDuration, RenewDeadline, RetryPeriod time.Duration

	Scheduler         bool     // run the scheduler
	Controllers       []string // controller names (controllers.Select); none = no controller-manager
	ControllerOptions controller.Options

	Registerer prometheus.Registerer // for leader metrics; may be nil
	Logger     *slog.Logger
}

// Run campaigns for the scheduler and controller-manager leases and runs each
// component while its lease is held, until ctx ends. It returns after both
// components have stopped and released their leases.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	var metrics *leader.Metrics
	if cfg.Registerer != nil {
		metrics = leader.NewMetrics(cfg.Registerer)
	}
	electionClient, err := kubernetes.NewForConfig(withAgent(cfg.RestConfig, "leader-election", 50))
	if err != nil {
		return fmt.Errorf("components: %w", err)
	}
	// Leadership events ("m1_123 became leader") are recorded on the Lease,
	// as Kubernetes does, by a broadcaster that lives as long as the master.
	events := record.NewBroadcaster(record.WithContext(ctx))
	events.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: electionClient.CoreV1().Events("")})
	defer events.Shutdown()

	type component struct {
		lease string
		work  func(ctx context.Context, client kubernetes.Interface, recorder func(string) record.EventRecorder, log *slog.Logger) error
		qps   float32
	}
	var list []component
	if cfg.Scheduler {
		list = append(list, component{SchedulerLease, runScheduler, 5000})
	}
	if len(cfg.Controllers) > 0 {
		names := cfg.Controllers
		opts := cfg.ControllerOptions
		list = append(list, component{ControllerManagerLease, func(ctx context.Context, client kubernetes.Interface, recorder func(string) record.EventRecorder, log *slog.Logger) error {
			return controllers.Run(ctx, &controller.Context{
				Client:    client,
				Informers: informers.NewSharedInformerFactory(client, 0),
				Recorder:  recorder,
				Logger:    log,
				Options:   opts,
			}, names)
		}, 1000})
	}

	var wg sync.WaitGroup
	for _, comp := range list {
		log := cfg.Logger.With("component", comp.lease)
		el, err := leader.New(leader.Config{
			Client: electionClient, Name: comp.lease, Identity: cfg.Identity,
			LeaseDuration: cfg.LeaseDuration, RenewDeadline: cfg.RenewDeadline, RetryPeriod: cfg.RetryPeriod,
			Logger: log, Metrics: metrics,
			EventRecorder: events.NewRecorder(scheme.Scheme, v1.EventSource{Component: comp.lease}),
		})
		if err != nil {
			return err
		}
		// Every write of the component passes the fence of its own lease.
		rc := withAgent(cfg.RestConfig, comp.lease, comp.qps)
		rc.Wrap(leader.Fence(el.Active))
		client, err := kubernetes.NewForConfig(rc)
		if err != nil {
			return fmt.Errorf("components: %w", err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			el.Run(ctx, func(ctx context.Context) {
				// A fresh event broadcaster per term: its sink writes
				// through the fenced client, and it is flushed and
				// stopped with the term.
				termEvents := record.NewBroadcaster(record.WithContext(ctx))
				termEvents.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
				defer termEvents.Shutdown()
				recorder := func(component string) record.EventRecorder {
					return termEvents.NewRecorder(scheme.Scheme, v1.EventSource{Component: component})
				}
				if err := comp.work(ctx, client, recorder, log); err != nil {
					log.Error("component failed; giving up this term", "err", err)
				}
			})
		}()
	}
	wg.Wait()
	return nil
}

// runScheduler is one term of the scheduler.
func runScheduler(ctx context.Context, client kubernetes.Interface, recorder func(string) record.EventRecorder, log *slog.Logger) error {
	factory := informers.NewSharedInformerFactory(client, 0)
	s, err := scheduler.New(scheduler.Config{Client: client, Informers: factory,
		Recorder: recorder(scheduler.DefaultSchedulerName), Logger: log})
	if err != nil {
		return err
	}
	factory.Start(ctx.Done())
	defer factory.Shutdown()
	for typ, ok := range factory.WaitForCacheSync(ctx.Done()) {
		if !ok && ctx.Err() == nil {
			return fmt.Errorf("informer cache for %v did not sync", typ)
		}
	}
	s.Run(ctx)
	return nil
}

// withAgent copies rc with a user agent and client-side rate limit.
func withAgent(rc *rest.Config, agent string, qps float32) *rest.Config {
	c := rest.CopyConfig(rc)
	c.UserAgent = "synod/" + agent
	c.QPS = qps
	c.Burst = int(2 * qps)
	return c
}
