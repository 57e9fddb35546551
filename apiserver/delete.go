package apiserver

import (
	"context"
	"net/http"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
)

// systemNamespaces exist from bootstrap and cannot be deleted.
var systemNamespaces = []string{"default", "kube-system", "kube-public", "kube-node-lease"}

func deleteOptions(r *http.Request) (*metav1.DeleteOptions, error) {
	opts := &metav1.DeleteOptions{}
	data, err := readBody(r)
	if err != nil {
		return nil, err
	}
	if len(data) > 0 {
		if err := decodeAny(data, opts); err != nil {
			return nil, err
		}
	}
	q := r.URL.Query()
	if v := q.Get("gracePeriodSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, apierrors.NewBadRequest("invalid gracePeriodSeconds")
		}
		opts.GracePeriodSeconds = &n
	}
	if v := q.Get("propagationPolicy"); v != "" {
		p := metav1.DeletionPropagation(v)
		opts.PropagationPolicy = &p
	}
	return opts, nil
}

// delete removes an object, or marks it for deletion when finalizers or a
// kubelet (for a bound pod) must act first.
func (s *Server) delete(ctx context.Context, r *http.Request, req *request) (runtime.Object, int, error) {
	opts, err := deleteOptions(r)
	if err != nil {
		return nil, 0, err
	}
	if req.res.Name == "namespaces" {
		for _, n := range systemNamespaces {
			if req.name == n {
				return nil, 0, apierrors.NewForbidden(req.res.GVR().GroupResource(), req.name, errString("this namespace may not be deleted"))
			}
		}
	}
	out, err := retryOnConflict(func() (runtime.Object, error) {
		cur, err := s.store.get(ctx, req.res, req.namespace, req.name)
		if err != nil {
			return nil, err
		}
		m, _ := meta.Accessor(cur)
		if p := opts.Preconditions; p != nil {
			if p.UID != nil && *p.UID != m.GetUID() {
				return nil, apierrors.NewConflict(req.res.GVR().GroupResource(), req.name, errString("Precondition failed: UID in precondition: "+string(*p.UID)+", UID in object meta: "+string(m.GetUID())))
			}
			if p.ResourceVersion != nil && *p.ResourceVersion != m.GetResourceVersion() {
				return nil, apierrors.NewConflict(req.res.GVR().GroupResource(), req.name, errString("Precondition failed: ResourceVersion in precondition: "+*p.ResourceVersion+", ResourceVersion in object meta: "+m.GetResourceVersion()))
			}
		}
		if dryRun(r) {
			return cur, nil
		}
		rev, _ := strconv.ParseInt(m.GetResourceVersion(), 10, 64)
		before := cur.DeepCopyObject()
		// The propagation policy becomes a finalizer the garbage collector
		// acts on, as in Kubernetes (orphan: unlink dependents first;
		// foregroundDeletion: delete blocking dependents first).
		m.SetFinalizers(deletionFinalizers(m.GetFinalizers(), opts))
		pending := len(m.GetFinalizers()) > 0
		if ns, ok := cur.(*corev1.Namespace); ok && len(ns.Spec.Finalizers) > 0 {
			// The namespace controller empties the namespace, then
			// removes the "kubernetes" finalizer through /finalize.
			pending = true
		}
		if pod, ok := cur.(*corev1.Pod); ok && gracefulPod(pod) {
			grace := int64(30)
			if pod.Spec.TerminationGracePeriodSeconds != nil {
				grace = *pod.Spec.TerminationGracePeriodSeconds
			}
			if opts.GracePeriodSeconds != nil {
				grace = *opts.GracePeriodSeconds
			}
			// Finalizers hold a pod even when its kubelet confirms the
			// delete with grace 0 (the job controller counts a pod by
			// its batch.kubernetes.io/job-tracking finalizer).
			pending = pending || grace > 0
			// A repeated delete may shorten the grace period, never
			// extend it (as in Kubernetes).
			if prev := m.GetDeletionGracePeriodSeconds(); m.GetDeletionTimestamp() != nil && prev != nil && *prev < grace {
				grace = *prev
			}
			m.SetDeletionGracePeriodSeconds(&grace)
		}
		if !pending {
			if _, err := s.store.remove(ctx, req.res, req.namespace, req.name, rev); err != nil {
				return nil, err
			}
			if svc, ok := cur.(*corev1.Service); ok {
				s.releaseService(svc)
			}
			return cur, nil
		}
		if m.GetDeletionTimestamp() == nil {
			now := metav1.Now()
			m.SetDeletionTimestamp(&now)
			if m.GetDeletionGracePeriodSeconds() == nil {
				zero := int64(0)
				m.SetDeletionGracePeriodSeconds(&zero)
			}
		}
		if ns, ok := cur.(*corev1.Namespace); ok {
			ns.Status.Phase = corev1.NamespaceTerminating
		}
		if apiequality.Semantic.DeepEqual(before, cur) {
			// Deleting what is already being deleted changes nothing:
			// no write, no watch event (a kubelet re-confirming its
			// delete of a pod held by a finalizer would otherwise
			// rewrite it in a loop).
			return cur, nil
		}
		return s.store.update(ctx, req.res, req.namespace, req.name, rev, cur)
	})
	if err != nil {
		return nil, 0, err
	}
	code := http.StatusOK
	if m, _ := meta.Accessor(out); m.GetDeletionTimestamp() != nil {
		code = http.StatusAccepted
	}
	return out, code, nil
}

// deletionFinalizers applies a delete's propagation policy (or the
// deprecated orphanDependents) to an object's finalizers, as kube-apiserver's
// deletionFinalizersForGarbageCollection does. Without either the
// finalizers stay as they are: the default policy of every served kind is
// background.
func deletionFinalizers(finalizers []string, opts *metav1.DeleteOptions) []string {
	var orphan, foreground bool
	switch {
	case opts.OrphanDependents != nil:
		orphan = *opts.OrphanDependents
	case opts.PropagationPolicy != nil:
		orphan = *opts.PropagationPolicy == metav1.DeletePropagationOrphan
		foreground = *opts.PropagationPolicy == metav1.DeletePropagationForeground
	default:
		return finalizers
	}
	out := make([]string, 0, len(finalizers)+1)
	for _, f := range finalizers {
		if f != metav1.FinalizerOrphanDependents && f != metav1.FinalizerDeleteDependents {
			out = append(out, f)
		}
	}
	if orphan {
		out = append(out, metav1.FinalizerOrphanDependents)
	}
	if foreground {
		out = append(out, metav1.FinalizerDeleteDependents)
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

type errString string

func (e errString) Error() string { return string(e) }

// deleteCollection deletes every object a list with the same selectors
// returns.
func (s *Server) deleteCollection(ctx context.Context, r *http.Request, req *request) (runtime.Object, error) {
	items, _, err := s.listAll(ctx, r, req)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		m, _ := meta.Accessor(it)
		one := *req
		one.name, one.verb = m.GetName(), "delete"
		rr := r.Clone(ctx)
		rr.Body = http.NoBody
		if _, _, err := s.delete(ctx, rr, &one); err != nil && !apierrors.IsNotFound(err) {
			return nil, err
		}
	}
	return statusSuccess(nil), nil
}
