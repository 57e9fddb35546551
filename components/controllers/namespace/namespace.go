package namespace

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	v1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/util/retry"
	"k8s.io/client-go/util/workqueue"

	"synod/components/controller"
)

const component = "namespace-controller"

// Requeue bounds while content remains: quick at first (hollow or real
// kubelets finish pods within moments), then no faster than maxRequeue.
const (
	minRequeue = 100 * time.Millisecond
	maxRequeue = 5 * time.Second
)

// errContentRemaining: deletion is under way but not finished.
type errContentRemaining struct{ remaining int }

func (e *errContentRemaining) Error() string {
	return fmt.Sprintf("%d objects remain in the namespace", e.remaining)
}

// Unwrap makes remaining content an expected, quietly retried condition.
func (e *errContentRemaining) Unwrap() error { return controller.ErrRetry }

// Controller empties terminating namespaces and then finalizes them.
type Controller struct {
	client     kubernetes.Interface
	meta       metadata.Interface
	disc       discovery.DiscoveryInterface
	log        *slog.Logger
	workers    int
	namespaces corelisters.NamespaceLister
	synced     []cache.InformerSynced
	queue      workqueue.TypedRateLimitingInterface[string]
}

// New builds the controller from the shared informers.
func New(c *controller.Context) (controller.Runner, error) {
	mc, err := metadataClient(c.Client)
	if err != nil {
		return nil, fmt.Errorf("namespace: %w", err)
	}
	nsInformer := c.Informers.Core().V1().Namespaces()
	podInformer := c.Informers.Core().V1().Pods()
	n := &Controller{
		client:     c.Client,
		meta:       mc,
		disc:       c.Client.Discovery(),
		log:        c.Logger.With("controller", "namespace"),
		workers:    max(1, c.Options.ConcurrentSyncs),
		namespaces: nsInformer.Lister(),
		synced:     []cache.InformerSynced{nsInformer.Informer().HasSynced, podInformer.Informer().HasSynced},
		queue: workqueue.NewTypedRateLimitingQueueWithConfig(
			workqueue.NewTypedItemExponentialFailureRateLimiter[string](minRequeue, maxRequeue),
			workqueue.TypedRateLimitingQueueConfig[string]{Name: "namespace"}),
	}
	onNamespace := func(obj any) {
		if ns, ok := obj.(*v1.Namespace); ok && ns.DeletionTimestamp != nil {
			n.queue.Add(ns.Name)
		}
	}
	if _, err := nsInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    onNamespace,
		UpdateFunc: func(_, obj any) { onNamespace(obj) },
	}); err != nil {
		return nil, fmt.Errorf("namespace: namespace handler: %w", err)
	}
	// Pods are what usually takes long (their kubelet must finish them):
	// the last one going is the moment to look again.
	if _, err := podInformer.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		DeleteFunc: func(obj any) {
			if t, ok := obj.(cache.DeletedFinalStateUnknown); ok {
				obj = t.Obj
			}
			pod, ok := obj.(*v1.Pod)
			if !ok {
				return
			}
			if ns, err := n.namespaces.Get(pod.Namespace); err == nil && ns.DeletionTimestamp != nil {
				n.queue.Add(ns.Name)
			}
		},
	}); err != nil {
		return nil, fmt.Errorf("namespace: pod handler: %w", err)
	}
	return n, nil
}

// metadataClient builds a k8s.io/client-go/metadata client on the
// connection of the controller's typed client, so it shares that client's
// credentials, lease fence and rate limit (controller.Context carries
// only the typed client).
func metadataClient(cs kubernetes.Interface) (metadata.Interface, error) {
	rc, ok := cs.CoreV1().RESTClient().(*rest.RESTClient)
	if !ok || rc == nil {
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

// Run works until ctx ends.
func (n *Controller) Run(ctx context.Context) {
	controller.RunWorkers(ctx, n.log, "namespace", n.queue, n.workers, n.synced, n.sync)
}

// sync is Kubernetes' namespacedResourcesDeleter.Delete: mark the
// namespace Terminating, delete its content, and once nothing is left,
// remove the "kubernetes" finalizer so the apiserver removes it.
func (n *Controller) sync(ctx context.Context, name string) error {
	ns, err := n.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("get namespace %s: %w", name, err)
	}
	if ns.DeletionTimestamp == nil {
		return nil
	}
	if ns.Status.Phase != v1.NamespaceTerminating {
		ns.Status.Phase = v1.NamespaceTerminating
		if ns, err = n.client.CoreV1().Namespaces().UpdateStatus(ctx, ns, metav1.UpdateOptions{}); err != nil {
			if apierrors.IsNotFound(err) {
				return nil
			}
			return fmt.Errorf("mark namespace %s terminating: %w", name, err)
		}
	}
	if !slices.Contains(ns.Spec.Finalizers, v1.FinalizerKubernetes) {
		return nil // already finalized; other finalizers hold it
	}
	remaining, err := n.deleteAllContent(ctx, ns)
	if err != nil {
		return err
	}
	if remaining > 0 {
		return &errContentRemaining{remaining: remaining}
	}
	return n.finalize(ctx, name)
}

// finalize removes the "kubernetes" finalizer through /finalize.
func (n *Controller) finalize(ctx context.Context, name string) error {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		ns, err := n.client.CoreV1().Namespaces().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		var kept []v1.FinalizerName
		for _, f := range ns.Spec.Finalizers {
			if f != v1.FinalizerKubernetes {
				kept = append(kept, f)
			}
		}
		if len(kept) == len(ns.Spec.Finalizers) {
			return nil
		}
		ns.Spec.Finalizers = kept
		_, err = n.client.CoreV1().Namespaces().Finalize(ctx, ns, metav1.UpdateOptions{})
		return err
	})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("finalize namespace %s: %w", name, err)
	}
	n.log.Debug("namespace emptied and finalized", "namespace", name)
	return nil
}

// gvrTotals is what is left of one resource after a deletion pass.
type gvrTotals struct {
	remaining  int
	finalizers map[string]int
}

// deleteAllContent deletes every namespaced object in ns and returns how
// many are still there, updating the namespace's deletion conditions.
func (n *Controller) deleteAllContent(ctx context.Context, ns *v1.Namespace) (int, error) {
	conds := &conditionUpdater{}
	lists, err := n.disc.ServerPreferredNamespacedResources()
	if err != nil {
		// Discovery errors are not fatal: delete what is known, and say so.
		conds.discoveryFailed(err)
	}
	type target struct {
		gvr        schema.GroupVersionResource
		collection bool
	}
	var targets []target
	for _, list := range lists {
		gv, perr := schema.ParseGroupVersion(list.GroupVersion)
		if perr != nil {
			conds.groupVersionFailed(perr)
			continue
		}
		for _, r := range list.APIResources {
			if strings.Contains(r.Name, "/") || !slices.Contains(r.Verbs, "delete") || !slices.Contains(r.Verbs, "list") {
				continue
			}
			targets = append(targets, target{gvr: gv.WithResource(r.Name), collection: slices.Contains(r.Verbs, "deletecollection")})
		}
	}
	remaining := 0
	var deleteErrs []error
	totals := map[schema.GroupVersionResource]gvrTotals{}
	for _, tg := range targets {
		t, err := n.deleteResource(ctx, ns.Name, tg.gvr, tg.collection)
		if err != nil {
			deleteErrs = append(deleteErrs, err)
			conds.deleteFailed(err)
		}
		totals[tg.gvr] = t
		remaining += t.remaining
	}
	conds.contentTotals(totals)
	if err := n.updateConditions(ctx, ns, conds); err != nil {
		deleteErrs = append(deleteErrs, err)
	}
	if len(deleteErrs) > 0 {
		return remaining, errors.Join(deleteErrs...)
	}
	if err != nil {
		// Something may have been missed: never finalize on a partial view.
		return remaining, fmt.Errorf("discover namespaced resources: %w", err)
	}
	return remaining, nil
}

// deleteResource deletes the objects of one resource not already being
// deleted, then counts what is left.
func (n *Controller) deleteResource(ctx context.Context, ns string, gvr schema.GroupVersionResource, collection bool) (gvrTotals, error) {
	rc := n.meta.Resource(gvr).Namespace(ns)
	list, err := rc.List(ctx, metav1.ListOptions{})
	if apierrors.IsNotFound(err) || apierrors.IsMethodNotSupported(err) {
		return gvrTotals{}, nil
	}
	if err != nil {
		return gvrTotals{}, fmt.Errorf("list %s: %w", gvr.GroupResource(), err)
	}
	var live []metav1.PartialObjectMetadata
	for _, it := range list.Items {
		if it.DeletionTimestamp == nil {
			live = append(live, it)
		}
	}
	background := metav1.DeletePropagationBackground
	opts := metav1.DeleteOptions{PropagationPolicy: &background}
	switch {
	case len(live) == 0:
	case collection && len(live) > 1:
		if err := rc.DeleteCollection(ctx, opts, metav1.ListOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return gvrTotals{remaining: len(list.Items)}, fmt.Errorf("delete %s: %w", gvr.GroupResource(), err)
		}
	default:
		for _, it := range live {
			uid := it.UID
			o := opts
			o.Preconditions = &metav1.Preconditions{UID: &uid}
			if err := rc.Delete(ctx, it.Name, o); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return gvrTotals{remaining: len(list.Items)}, fmt.Errorf("delete %s %s: %w", gvr.GroupResource(), it.Name, err)
			}
		}
	}
	if len(list.Items) == 0 {
		return gvrTotals{}, nil
	}
	// What the deletes did not remove at once (graceful pods, finalizers).
	after, err := rc.List(ctx, metav1.ListOptions{})
	if err != nil {
		return gvrTotals{remaining: len(list.Items)}, fmt.Errorf("list %s: %w", gvr.GroupResource(), err)
	}
	t := gvrTotals{remaining: len(after.Items), finalizers: map[string]int{}}
	for _, it := range after.Items {
		for _, f := range it.Finalizers {
			t.finalizers[f]++
		}
	}
	return t, nil
}

// updateConditions writes the namespace's deletion conditions if changed.
func (n *Controller) updateConditions(ctx context.Context, ns *v1.Namespace, conds *conditionUpdater) error {
	cur := ns.DeepCopy()
	if !conds.apply(&cur.Status) {
		return nil
	}
	_, err := n.client.CoreV1().Namespaces().UpdateStatus(ctx, cur, metav1.UpdateOptions{})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return fmt.Errorf("update conditions of namespace %s: %w", ns.Name, err)
	}
	return nil
}

// conditionUpdater collects a deletion pass's outcome as the namespace
// conditions Kubernetes sets.
type conditionUpdater struct {
	conditions []v1.NamespaceCondition
	deleteErrs []error
}

var conditionTypes = []v1.NamespaceConditionType{
	v1.NamespaceDeletionDiscoveryFailure,
	v1.NamespaceDeletionGVParsingFailure,
	v1.NamespaceDeletionContentFailure,
	v1.NamespaceContentRemaining,
	v1.NamespaceFinalizersRemaining,
}

var okMessages = map[v1.NamespaceConditionType]string{
	v1.NamespaceDeletionDiscoveryFailure: "All resources successfully discovered",
	v1.NamespaceDeletionGVParsingFailure: "All legacy kube types successfully parsed",
	v1.NamespaceDeletionContentFailure:   "All content successfully deleted, may be waiting on finalization",
	v1.NamespaceContentRemaining:         "All content successfully removed",
	v1.NamespaceFinalizersRemaining:      "All content-preserving finalizers finished",
}

var okReasons = map[v1.NamespaceConditionType]string{
	v1.NamespaceDeletionDiscoveryFailure: "ResourcesDiscovered",
	v1.NamespaceDeletionGVParsingFailure: "ParsedGroupVersions",
	v1.NamespaceDeletionContentFailure:   "ContentDeleted",
	v1.NamespaceContentRemaining:         "ContentRemoved",
	v1.NamespaceFinalizersRemaining:      "ContentHasNoFinalizers",
}

func (u *conditionUpdater) add(t v1.NamespaceConditionType, reason, msg string) {
	u.conditions = append(u.conditions, v1.NamespaceCondition{Type: t, Status: v1.ConditionTrue, LastTransitionTime: metav1.Now(), Reason: reason, Message: msg})
}

func (u *conditionUpdater) discoveryFailed(err error) {
	msg := err.Error()
	var derr *discovery.ErrGroupDiscoveryFailed
	if errors.As(err, &derr) {
		msg = fmt.Sprintf("Discovery failed for some groups, %d failing: %v", len(derr.Groups), err)
	}
	u.add(v1.NamespaceDeletionDiscoveryFailure, "DiscoveryFailed", msg)
}

func (u *conditionUpdater) groupVersionFailed(err error) {
	u.add(v1.NamespaceDeletionGVParsingFailure, "GroupVersionParsingFailed", fmt.Sprintf("Failed to parse group version: %v", err))
}

func (u *conditionUpdater) deleteFailed(err error) { u.deleteErrs = append(u.deleteErrs, err) }

func (u *conditionUpdater) contentTotals(totals map[schema.GroupVersionResource]gvrTotals) {
	var resources []string
	byFinalizer := map[string]int{}
	for gvr, t := range totals {
		if t.remaining > 0 {
			resources = append(resources, fmt.Sprintf("%s.%s has %d resource instances", gvr.Resource, gvr.Group, t.remaining))
		}
		for f, c := range t.finalizers {
			byFinalizer[f] += c
		}
	}
	if len(resources) > 0 {
		sort.Strings(resources)
		u.add(v1.NamespaceContentRemaining, "SomeResourcesRemain", "Some resources are remaining: "+strings.Join(resources, ", "))
	}
	if len(byFinalizer) > 0 {
		var fins []string
		for f, c := range byFinalizer {
			fins = append(fins, fmt.Sprintf("%s in %d resource instances", f, c))
		}
		sort.Strings(fins)
		u.add(v1.NamespaceFinalizersRemaining, "SomeFinalizersRemain", "Some content in the namespace has finalizers remaining: "+strings.Join(fins, ", "))
	}
}

// apply merges the collected conditions into status: every type is set,
// False with its "ok" reason when nothing went wrong. It reports changes.
func (u *conditionUpdater) apply(status *v1.NamespaceStatus) bool {
	if len(u.deleteErrs) > 0 {
		msgs := make([]string, 0, len(u.deleteErrs))
		for _, e := range u.deleteErrs {
			msgs = append(msgs, e.Error())
		}
		sort.Strings(msgs)
		u.add(v1.NamespaceDeletionContentFailure, "ContentDeletionFailed",
			fmt.Sprintf("Failed to delete all resource types, %d remaining: %v", len(u.deleteErrs), strings.Join(msgs, ", ")))
	}
	changed := false
	for _, t := range conditionTypes {
		want := findCondition(u.conditions, t)
		if want == nil {
			want = &v1.NamespaceCondition{Type: t, Status: v1.ConditionFalse, LastTransitionTime: metav1.Now(), Reason: okReasons[t], Message: okMessages[t]}
		}
		old := findCondition(status.Conditions, t)
		switch {
		case old == nil:
			status.Conditions = append(status.Conditions, *want)
			changed = true
		case old.Status != want.Status || old.Reason != want.Reason || old.Message != want.Message:
			if old.Status != want.Status {
				old.LastTransitionTime = metav1.Now()
			}
			old.Status, old.Reason, old.Message = want.Status, want.Reason, want.Message
			changed = true
		}
	}
	return changed
}

func findCondition(conds []v1.NamespaceCondition, t v1.NamespaceConditionType) *v1.NamespaceCondition {
	for i := range conds {
		if conds[i].Type == t {
			return &conds[i]
		}
	}
	return nil
}
