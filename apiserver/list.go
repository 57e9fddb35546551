package apiserver

import (
	"context"
	"fmt"
	"net/http"
	"strconv"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"

	"synod/apiserver/resource"
)

// selectableFields returns the field-selector values of an object, as
// Kubernetes' field label conversion functions do for each kind.
func selectableFields(obj runtime.Object) fields.Set {
	m, _ := meta.Accessor(obj)
	set := fields.Set{"metadata.name": m.GetName()}
	if m.GetNamespace() != "" {
		set["metadata.namespace"] = m.GetNamespace()
	}
	switch o := obj.(type) {
	case *corev1.Pod:
		set["spec.nodeName"] = o.Spec.NodeName
		set["spec.restartPolicy"] = string(o.Spec.RestartPolicy)
		set["spec.schedulerName"] = o.Spec.SchedulerName
		set["spec.serviceAccountName"] = o.Spec.ServiceAccountName
		set["status.phase"] = string(o.Status.Phase)
		set["status.podIP"] = o.Status.PodIP
		set["status.nominatedNodeName"] = o.Status.NominatedNodeName
	case *corev1.Event:
		set["involvedObject.kind"] = o.InvolvedObject.Kind
		set["involvedObject.namespace"] = o.InvolvedObject.Namespace
		set["involvedObject.name"] = o.InvolvedObject.Name
		set["involvedObject.uid"] = string(o.InvolvedObject.UID)
		set["involvedObject.apiVersion"] = o.InvolvedObject.APIVersion
		set["involvedObject.resourceVersion"] = o.InvolvedObject.ResourceVersion
		set["involvedObject.fieldPath"] = o.InvolvedObject.FieldPath
		set["reason"] = o.Reason
		set["reportingComponent"] = o.ReportingController
		set["source"] = o.Source.Component
		set["type"] = o.Type
	case *corev1.Node:
		set["spec.unschedulable"] = strconv.FormatBool(o.Spec.Unschedulable)
	case *corev1.Namespace:
		set["status.phase"] = string(o.Status.Phase)
	case *corev1.Secret:
		set["type"] = string(o.Type)
	case *appsv1.ReplicaSet:
		set["status.replicas"] = strconv.Itoa(int(o.Status.Replicas))
	case *batchv1.Job:
		set["status.successful"] = strconv.Itoa(int(o.Status.Succeeded))
	}
	return set
}

// fieldsFor lists the field labels a kind supports, for 400s on others.
func fieldsFor(res resource.Resource) map[string]bool {
	set := selectableFields(res.New())
	out := map[string]bool{"metadata.name": true, "metadata.namespace": true}
	for k := range set {
		out[k] = true
	}
	return out
}

// selectors parses labelSelector and fieldSelector into a filter.
func selectors(r *http.Request, res resource.Resource) (labels.Selector, fields.Selector, error) {
	q := r.URL.Query()
	ls, err := labels.Parse(q.Get("labelSelector"))
	if err != nil {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("unable to parse requirement: %v", err))
	}
	fs, err := fields.ParseSelector(q.Get("fieldSelector"))
	if err != nil {
		return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("invalid field selector: %v", err))
	}
	allowed := fieldsFor(res)
	for _, req := range fs.Requirements() {
		if !allowed[req.Field] {
			return nil, nil, apierrors.NewBadRequest(fmt.Sprintf("field label not supported: %s", req.Field))
		}
	}
	return ls, fs, nil
}

func matches(ls labels.Selector, fs fields.Selector, obj runtime.Object) bool {
	m, err := meta.Accessor(obj)
	if err != nil {
		return false
	}
	return ls.Matches(labels.Set(m.GetLabels())) && fs.Matches(selectableFields(obj))
}

// listParams reads limit, continue and the resourceVersion semantics of a
// list: unset = latest (linearizable), "0" = any recent state, N with
// resourceVersionMatch NotOlderThan (default) or Exact.
func listParams(r *http.Request) (listOptions, error) {
	q := r.URL.Query()
	var o listOptions
	if v := q.Get("limit"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			return o, apierrors.NewBadRequest("invalid limit")
		}
		o.limit = n
	}
	o.cont = q.Get("continue")
	rv, match := q.Get("resourceVersion"), q.Get("resourceVersionMatch")
	if rv != "" && rv != "0" {
		n, err := strconv.ParseInt(rv, 10, 64)
		if err != nil || n < 0 {
			return o, apierrors.NewBadRequest(fmt.Sprintf("invalid resource version %q", rv))
		}
		switch match {
		case "", string(metav1.ResourceVersionMatchNotOlderThan):
			o.minRev = n
		case string(metav1.ResourceVersionMatchExact):
			o.rev = n
		default:
			return o, apierrors.NewBadRequest("resourceVersionMatch must be NotOlderThan or Exact")
		}
	} else if match != "" && rv == "" {
		return o, apierrors.NewBadRequest("resourceVersionMatch is forbidden unless resourceVersion is provided")
	}
	if o.cont != "" && rv != "" && rv != "0" {
		return o, apierrors.NewBadRequest("specifying resource version is not allowed when using continue")
	}
	return o, nil
}

// listAll lists the request's collection with its selectors.
func (s *Server) listAll(ctx context.Context, r *http.Request, req *request) ([]runtime.Object, int64, error) {
	ls, fs, err := selectors(r, req.res)
	if err != nil {
		return nil, 0, err
	}
	items, rev, _, err := s.store.list(ctx, req.res, req.namespace, listOptions{filter: func(o runtime.Object) bool { return matches(ls, fs, o) }})
	return items, rev, err
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request, req *request) {
	ls, fs, err := selectors(r, req.res)
	if err != nil {
		writeError(w, err)
		return
	}
	o, err := listParams(r)
	if err != nil {
		writeError(w, err)
		return
	}
	o.filter = func(obj runtime.Object) bool { return matches(ls, fs, obj) }
	items, rev, next, err := s.store.list(r.Context(), req.res, req.namespace, o)
	if err != nil {
		writeError(w, err)
		return
	}
	if wantsMetadata(r) {
		list, err := metadataListOf(items, strconv.FormatInt(rev, 10), next)
		if err != nil {
			writeError(w, apierrors.NewInternalError(err))
			return
		}
		writeJSON(w, http.StatusOK, "", list)
		return
	}
	if wantsTable(r) && s.hooks.table != nil {
		t, err := s.tableFor(r, req.res, items)
		if err != nil {
			writeError(w, apierrors.NewInternalError(err))
			return
		}
		t.ResourceVersion = strconv.FormatInt(rev, 10)
		t.Continue = next
		writeJSON(w, http.StatusOK, tableContentType, t)
		return
	}
	list := req.res.NewList()
	lm, _ := meta.ListAccessor(list)
	lm.SetResourceVersion(strconv.FormatInt(rev, 10))
	lm.SetContinue(next)
	if err := meta.SetList(list, items); err != nil {
		writeError(w, apierrors.NewInternalError(err))
		return
	}
	list.GetObjectKind().SetGroupVersionKind(req.res.GroupVersion().WithKind(req.res.ListKind))
	writeJSON(w, http.StatusOK, "", list)
}
