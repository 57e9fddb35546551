package garbagecollector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/metadata/metadatainformer"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"

	"synod/components/controller"
)

const (
	// component is the name events are reported as.
	component = "garbage-collector-controller"
	// resyncPeriod is how often discovery is redone for new resources
	// (kube-controller-manager's 30 s).
	resyncPeriod = 30 * time.Second
	// absentOwnerCacheSize bounds the remembered absent owners.
	absentOwnerCacheSize = 500
)

var (
	// errVirtualDelete: the item was found absent and handed to the graph
	// builder; nothing to retry.
	errVirtualDelete = errors.New("enqueued virtual delete event")
	// errNamespacedOwnerOfClusterScoped: an invalid reference that no
	// retry can fix.
	errNamespacedOwnerOfClusterScoped = errors.New("cluster-scoped objects cannot refer to namespaced owners")
)

// GarbageCollector deletes objects whose owners are gone and carries out
// foreground and orphan deletion, like Kubernetes' garbage collector: a
// graph of every watched object keyed by UID (built from metadata
// informers by one goroutine) and workers that act on it through the API.
type GarbageCollector struct {
	meta     metadata.Interface
	disc     discovery.DiscoveryInterface
	recorder record.EventRecorder
	log      *slog.Logger
	workers  int
	factory  metadatainformer.SharedInformerFactory

	// mu guards the graph: uidToNode and every node's fields.
	mu        sync.RWMutex
	uidToNode map[types.UID]*node
	absent    *absentOwners

	graphChanges    workqueue.TypedInterface[*event]
	attemptToDelete workqueue.TypedRateLimitingInterface[*node]
	attemptToOrphan workqueue.TypedRateLimitingInterface[*node]

	mapperMu sync.RWMutex
	mapper   meta.RESTMapper

	monitors map[schema.GroupVersionResource]bool // only Run's goroutine
}

// New builds the collector; discovery and informers start in Run.
func New(c *controller.Context) (controller.Runner, error) {
	mc, err := metadataClient(c.Client)
	if err != nil {
		return nil, fmt.Errorf("garbagecollector: %w", err)
	}
	return &GarbageCollector{
		meta:      mc,
		disc:      c.Client.Discovery(),
		recorder:  c.Recorder(component),
		log:       c.Logger.With("controller", "garbagecollector"),
		workers:   max(1, c.Options.ConcurrentSyncs),
		factory:   metadatainformer.NewSharedInformerFactory(mc, 0),
		uidToNode: map[types.UID]*node{},
		absent:    newAbsentOwners(absentOwnerCacheSize),
		graphChanges: workqueue.NewTypedWithConfig(workqueue.TypedQueueConfig[*event]{
			Name: "garbage_collector_graph_changes"}),
		attemptToDelete: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[*node](),
			workqueue.TypedRateLimitingQueueConfig[*node]{Name: "garbage_collector_attempt_to_delete"}),
		attemptToOrphan: workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[*node](),
			workqueue.TypedRateLimitingQueueConfig[*node]{Name: "garbage_collector_attempt_to_orphan"}),
		monitors: map[schema.GroupVersionResource]bool{},
	}, nil
}

// metadataClient builds a k8s.io/client-go/metadata client on the
// connection of the controller's typed client, so it shares that client's
// credentials, lease fence and rate limit (controller.Context carries
// only the typed client).
func metadataClient(cs kubernetes.Interface) (metadata.Interface, error) {
	rc, ok := cs.CoreV1().RESTClient().(*rest.RESTClient)
	if !ok || rc == nil || rc.Client == nil {
		return nil, fmt.Errorf("metadata client: the controller's client has no REST connection to share")
	}
	u := rc.Get().URL()
	cfg := &rest.Config{Host: u.Scheme + "://" + u.Host, UserAgent: "synod/" + component, RateLimiter: rc.GetRateLimiter()}
	if cfg.RateLimiter == nil {
		cfg.QPS = -1 // the typed client is not throttled either
	}
	httpClient := rc.Client
	if httpClient == nil {
		httpClient = http.DefaultClient
	}
	mc, err := metadata.NewForConfigAndClient(cfg, httpClient)
	if err != nil {
		return nil, fmt.Errorf("metadata client: %w", err)
	}
	return mc, nil
}

// Run discovers resources, starts their informers, waits for them and
// collects garbage until ctx ends.
func (gc *GarbageCollector) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer func() {
		gc.attemptToDelete.ShutDown()
		gc.attemptToOrphan.ShutDown()
		gc.graphChanges.ShutDown()
		wg.Wait()
		gc.factory.Shutdown()
	}()
	wg.Go(gc.runGraphBuilder)

	// Discovery must work once before anything can be collected.
	var synced []cache.InformerSynced
	err := wait.PollUntilContextCancel(ctx, time.Second, true, func(ctx context.Context) (bool, error) {
		s, err := gc.resync(ctx)
		synced = append(synced, s...)
		if err != nil {
			gc.log.Warn("discovery for garbage collection incomplete; retrying", "err", err)
		}
		return len(gc.monitors) > 0, nil
	})
	if err != nil {
		return
	}
	if !cache.WaitForCacheSync(ctx.Done(), synced...) {
		return
	}
	gc.log.Debug("garbage collector synced", "resources", len(gc.monitors))
	for i := 0; i < gc.workers; i++ {
		wg.Go(func() {
			for gc.processAttemptToDelete(ctx) {
			}
		})
		wg.Go(func() {
			for gc.processAttemptToOrphan(ctx) {
			}
		})
	}
	// New resources (and a fresh REST mapping) every resyncPeriod.
	wait.UntilWithContext(ctx, func(ctx context.Context) {
		if _, err := gc.resync(ctx); err != nil && ctx.Err() == nil {
			gc.log.Warn("garbage collector resync incomplete", "err", err)
		}
	}, resyncPeriod)
}

// resync refreshes the REST mapper and watches new resources.
func (gc *GarbageCollector) resync(ctx context.Context) ([]cache.InformerSynced, error) {
	groups, err := restmapper.GetAPIGroupResources(gc.disc)
	if err != nil && len(groups) == 0 {
		return nil, fmt.Errorf("discover api groups: %w", err)
	}
	gc.mapperMu.Lock()
	gc.mapper = restmapper.NewDiscoveryRESTMapper(groups)
	gc.mapperMu.Unlock()
	resources, derr := deletableResources(gc.disc)
	if len(resources) == 0 {
		return nil, errors.Join(err, derr)
	}
	synced, merr := gc.syncMonitors(ctx, resources)
	return synced, errors.Join(err, derr, merr)
}

// restMappingError: an owner's kind is not (yet) a known resource.
type restMappingError struct{ kind, version string }

func (r *restMappingError) Error() string {
	return fmt.Sprintf("unable to get REST mapping for %s/%s", r.kind, r.version)
}

// apiResource maps an apiVersion and kind to the resource and its scope.
func (gc *GarbageCollector) apiResource(apiVersion, kind string) (schema.GroupVersionResource, bool, error) {
	gv, err := schema.ParseGroupVersion(apiVersion)
	if err != nil {
		return schema.GroupVersionResource{}, false, fmt.Errorf("parse apiVersion %q: %w", apiVersion, err)
	}
	gc.mapperMu.RLock()
	mapper := gc.mapper
	gc.mapperMu.RUnlock()
	if mapper == nil {
		return schema.GroupVersionResource{}, false, &restMappingError{kind: kind, version: apiVersion}
	}
	m, err := mapper.RESTMapping(schema.GroupKind{Group: gv.Group, Kind: kind}, gv.Version)
	if err != nil {
		return schema.GroupVersionResource{}, false, &restMappingError{kind: kind, version: apiVersion}
	}
	return m.Resource, m.Scope.Name() == meta.RESTScopeNameNamespace, nil
}

func (gc *GarbageCollector) resourceClient(ref objectReference) (metadata.ResourceInterface, error) {
	res, namespaced, err := gc.apiResource(ref.APIVersion, ref.Kind)
	if err != nil {
		return nil, err
	}
	if namespaced {
		return gc.meta.Resource(res).Namespace(ref.Namespace), nil
	}
	return gc.meta.Resource(res), nil
}

func (gc *GarbageCollector) getObject(ctx context.Context, ref objectReference) (*metav1.PartialObjectMetadata, error) {
	rc, err := gc.resourceClient(ref)
	if err != nil {
		return nil, err
	}
	return rc.Get(ctx, ref.Name, metav1.GetOptions{})
}

func (gc *GarbageCollector) deleteObject(ctx context.Context, ref objectReference, policy metav1.DeletionPropagation) error {
	rc, err := gc.resourceClient(ref)
	if err != nil {
		return err
	}
	uid := ref.UID
	return rc.Delete(ctx, ref.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}, PropagationPolicy: &policy})
}

func (gc *GarbageCollector) patchObject(ctx context.Context, ref objectReference, pt types.PatchType, data []byte) error {
	rc, err := gc.resourceClient(ref)
	if err != nil {
		return err
	}
	_, err = rc.Patch(ctx, ref.Name, pt, data, metav1.PatchOptions{})
	return err
}

// deleteOwnerRefsPatch removes the ownerReferences with the given UIDs
// (a strategic merge patch keyed on uid, as Kubernetes sends).
func deleteOwnerRefsPatch(dependent types.UID, owners ...types.UID) []byte {
	refs := make([]map[string]string, 0, len(owners))
	for _, o := range owners {
		refs = append(refs, map[string]string{"$patch": "delete", "uid": string(o)})
	}
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": refs, "uid": dependent}})
	return b
}

// removeFinalizer takes finalizer off the object, with optimistic
// concurrency.
func (gc *GarbageCollector) removeFinalizer(ctx context.Context, ref objectReference, finalizer string) error {
	return retry.RetryOnConflict(retry.DefaultBackoff, func() error {
		obj, err := gc.getObject(ctx, ref)
		if apierrors.IsNotFound(err) {
			return nil
		}
		if err != nil {
			return err
		}
		if obj.UID != ref.UID {
			return nil
		}
		var kept []string
		found := false
		for _, f := range obj.Finalizers {
			if f == finalizer {
				found = true
				continue
			}
			kept = append(kept, f)
		}
		if !found {
			return nil
		}
		patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"resourceVersion": obj.ResourceVersion, "finalizers": kept}})
		err = gc.patchObject(ctx, ref, types.MergePatchType, patch)
		if apierrors.IsNotFound(err) {
			return nil
		}
		return err
	})
}

// reportInvalidNamespaceOwnerRef records that n names a namespaced owner
// that lives in another namespace (such a reference is never satisfied).
func (gc *GarbageCollector) reportInvalidNamespaceOwnerRef(n *node, owner metav1.OwnerReference) {
	ref := &v1.ObjectReference{Kind: n.identity.Kind, APIVersion: n.identity.APIVersion, Namespace: n.identity.Namespace,
		Name: n.identity.Name, UID: n.identity.UID}
	gc.recorder.Eventf(ref, v1.EventTypeWarning, "OwnerRefInvalidNamespace",
		"ownerRef [%s/%s, namespace: %s, name: %s, uid: %s] does not exist in namespace %q",
		owner.APIVersion, owner.Kind, n.identity.Namespace, owner.Name, owner.UID, n.identity.Namespace)
}
