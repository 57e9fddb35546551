package serviceaccount

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/workqueue"

	"synod/components/controller"
)

const (
	component = "serviceaccount-controller"
	// DefaultName is the service account every namespace gets.
	DefaultName = "default"
)

// Controller ensures the default ServiceAccount of every namespace.
type Controller struct {
	client     kubernetes.Interface
	recorder   record.EventRecorder
	log        *slog.Logger
	workers    int
	namespaces corelisters.NamespaceLister
	accounts   corelisters.ServiceAccountLister
	synced     []cache.InformerSynced
	queue      workqueue.TypedRateLimitingInterface[string]
}

// New builds the controller from the shared informers.
func New(c *controller.Context) (controller.Runner, error) {
	nsInformer := c.Informers.Core().V1().Namespaces()
	saInformer := c.Informers.Core().V1().ServiceAccounts()
	s := &Controller{
		client:     c.Client,
		recorder:   c.Recorder(component),
		log:        c.Logger.With("controller", "serviceaccount"),
		workers:    max(1, c.Options.ConcurrentSyncs),
		namespaces: nsInformer.Lister(),
		accounts:   saInformer.Lister(),
		synced:     []cache.InformerSynced{nsInformer.Informer().HasSynced, saInformer.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "serviceaccount"}),
	}
	onNamespace := func(obj any) {
		if ns, ok := obj.(*v1.Namespace); ok {
			s.queue.Add(ns.Name)
		}
	}
	if _, err := nsInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onNamespace,
		UpdateFunc: func(_, obj any) { onNamespace(obj) },
	}); err != nil {
		return nil, fmt.Errorf("serviceaccount: namespace handler: %w", err)
	}
	if _, err := saInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			if sa, ok := obj.(*v1.ServiceAccount); ok && sa.Name == DefaultName {
				s.queue.Add(sa.Namespace)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("serviceaccount: serviceaccount handler: %w", err)
	}
	return s, nil
}

// Run works until ctx ends.
func (s *Controller) Run(ctx context.Context) {
	defer s.queue.ShutDown()
	if !cache.WaitForCacheSync(ctx.Done(), s.synced...) {
		return
	}
	var wg sync.WaitGroup
	for i := 0; i < s.workers; i++ {
		wg.Go(func() {
			wait.UntilWithContext(ctx, func(ctx context.Context) {
				for s.processNext(ctx) {
				}
			}, time.Second)
		})
	}
	<-ctx.Done()
	s.queue.ShutDown()
	wg.Wait()
}

func (s *Controller) processNext(ctx context.Context) bool {
	key, quit := s.queue.Get()
	if quit {
		return false
	}
	defer s.queue.Done(key)
	if err := s.sync(ctx, key); err != nil {
		if ctx.Err() == nil {
			s.log.Debug("sync failed; retrying", "namespace", key, "err", err)
		}
		s.queue.AddRateLimited(key)
		return true
	}
	s.queue.Forget(key)
	return true
}

func (s *Controller) sync(ctx context.Context, name string) error {
	ns, err := s.namespaces.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if ns.Status.Phase != v1.NamespaceActive || ns.DeletionTimestamp != nil {
		return nil // nothing new goes into a terminating namespace
	}
	if _, err := s.accounts.ServiceAccounts(name).Get(DefaultName); err == nil {
		return nil
	} else if !apierrors.IsNotFound(err) {
		return err
	}
	sa, err := s.client.CoreV1().ServiceAccounts(name).Create(ctx, &v1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: DefaultName}}, metav1.CreateOptions{})
	switch {
	case err == nil:
		s.recorder.Eventf(sa, v1.EventTypeNormal, "SuccessfulCreate", "Created service account %s/%s", name, DefaultName)
		return nil
	case apierrors.IsAlreadyExists(err), apierrors.HasStatusCause(err, v1.NamespaceTerminatingCause), apierrors.IsNotFound(err):
		// The cache was behind, or the namespace is going away.
		return nil
	default:
		s.recorder.Eventf(ns, v1.EventTypeWarning, "FailedCreate", "Error creating service account %s/%s: %v", name, DefaultName, err)
		return fmt.Errorf("create service account %s/%s: %w", name, DefaultName, err)
	}
}
