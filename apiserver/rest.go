package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"synod/apiserver/resource"
)

// hooks are the kind-specific parts of request handling, kept apart from the
// generic REST flow.
type hooks struct {
	table    func(kind string, objs []runtime.Object, now time.Time) (*metav1.Table, error)
	defaults func(runtime.Object)
	// prepareForUpdate copies what an update may leave out (a service's
	// cluster IP, say) from the stored object, before defaulting.
	prepareForUpdate func(obj, old runtime.Object)
	validateCreate   func(runtime.Object) field.ErrorList
	validateUpdate   func(obj, old runtime.Object) field.ErrorList
}

// serveResource handles one parsed resource request.
func (s *Server) serveResource(w http.ResponseWriter, r *http.Request, req *request) {
	ctx := r.Context()
	var (
		out  runtime.Object
		code = http.StatusOK
		err  error
	)
	switch {
	case req.sub == "scale":
		out, err = s.serveScale(ctx, r, req)
	case req.sub == "binding":
		out, code, err = s.bind(ctx, r, req)
	case req.sub == "log" || req.sub == "exec":
		s.servePodProxy(w, r, req) // podproxy.go: to the pod's kubelet
		return
	case req.verb == "get":
		out, err = s.store.get(ctx, req.res, req.namespace, req.name)
	case req.verb == "list":
		s.serveList(w, r, req)
		return
	case req.verb == "watch":
		s.serveWatch(w, r, req)
		return
	case req.verb == "create":
		out, code, err = s.create(ctx, w, r, req)
	case req.verb == "update":
		out, code, err = s.replace(ctx, w, r, req)
	case req.verb == "patch":
		out, err = s.patch(ctx, r, req)
	case req.verb == "delete":
		out, code, err = s.delete(ctx, r, req)
	case req.verb == "deletecollection":
		out, err = s.deleteCollection(ctx, r, req)
	default:
		err = apierrors.NewMethodNotSupported(req.res.GVR().GroupResource(), r.Method)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	s.writeObject(w, r, code, req.res, out)
}

// writeObject writes one object, as a Table if asked.
func (s *Server) writeObject(w http.ResponseWriter, r *http.Request, code int, res resource.Resource, obj runtime.Object) {
	if wantsMetadata(r) && obj.GetObjectKind().GroupVersionKind().Kind == res.Kind {
		if p, err := metadataOf(obj); err == nil {
			writeJSON(w, code, "", p)
			return
		}
	}
	if wantsTable(r) && s.hooks.table != nil {
		if m, err := meta.Accessor(obj); err == nil && obj.GetObjectKind().GroupVersionKind().Kind == res.Kind {
			t, err := s.tableFor(r, res, []runtime.Object{obj})
			if err == nil {
				t.ResourceVersion = m.GetResourceVersion()
				writeJSON(w, code, tableContentType, t)
				return
			}
		}
	}
	writeJSON(w, code, "", obj)
}

// tableFor builds a Table of objs; rows carry the object's metadata, or the
// whole object with includeObject=Object.
func (s *Server) tableFor(r *http.Request, res resource.Resource, objs []runtime.Object) (*metav1.Table, error) {
	t, err := s.hooks.table(res.Kind, objs, time.Now())
	if err != nil {
		return nil, err
	}
	t.Kind, t.APIVersion = "Table", "meta.k8s.io/v1"
	include := r.URL.Query().Get("includeObject")
	for i := range t.Rows {
		if i >= len(objs) {
			break
		}
		switch include {
		case "None":
		case "Object":
			t.Rows[i].Object = runtime.RawExtension{Object: objs[i]}
		default:
			m, err := meta.Accessor(objs[i])
			if err != nil {
				return nil, err
			}
			p := meta.AsPartialObjectMetadata(m)
			p.TypeMeta = metav1.TypeMeta{Kind: "PartialObjectMetadata", APIVersion: "meta.k8s.io/v1"}
			t.Rows[i].Object = runtime.RawExtension{Object: p}
		}
	}
	return t, nil
}

// prepareCreate sets the server-owned metadata of a new object.
func prepareCreate(obj runtime.Object, req *request) (metav1.Object, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, apierrors.NewBadRequest(err.Error())
	}
	if req.res.Namespaced {
		if m.GetNamespace() != "" && m.GetNamespace() != req.namespace {
			return nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
		m.SetNamespace(req.namespace)
	} else {
		m.SetNamespace("")
	}
	if m.GetName() == "" && m.GetGenerateName() != "" {
		m.SetName(m.GetGenerateName() + randomSuffix())
	}
	m.SetUID(newUID())
	m.SetCreationTimestamp(metav1.Now())
	m.SetResourceVersion("")
	m.SetDeletionTimestamp(nil)
	m.SetDeletionGracePeriodSeconds(nil)
	m.SetGeneration(0)
	if structField(obj, "Spec").IsValid() {
		m.SetGeneration(1) // generation counts spec changes
	}
	return m, nil
}

func invalid(res resource.Resource, name string, errs field.ErrorList) error {
	return apierrors.NewInvalid(res.GVK().GroupKind(), name, errs)
}

func (s *Server) create(ctx context.Context, w http.ResponseWriter, r *http.Request, req *request) (runtime.Object, int, error) {
	if req.name != "" {
		return nil, 0, apierrors.NewMethodNotSupported(req.res.GVR().GroupResource(), "POST")
	}
	data, err := readBody(r)
	if err != nil {
		return nil, 0, err
	}
	obj := req.res.New()
	if err := decodeObject(w, r, data, req.res.GVK(), obj); err != nil {
		return nil, 0, err
	}
	m, err := prepareCreate(obj, req)
	if err != nil {
		return nil, 0, err
	}
	resetStatusOnCreate(obj)
	if s.hooks.defaults != nil {
		s.hooks.defaults(obj)
	}
	if m.GetName() == "" {
		return nil, 0, invalid(req.res, "", field.ErrorList{field.Required(field.NewPath("metadata", "name"), "name or generateName is required")})
	}
	if s.hooks.validateCreate != nil {
		if errs := s.hooks.validateCreate(obj); len(errs) > 0 {
			return nil, 0, invalid(req.res, m.GetName(), errs)
		}
	}
	if err := s.admitCreate(ctx, req, obj); err != nil {
		return nil, 0, err
	}
	if dryRun(r) {
		obj.GetObjectKind().SetGroupVersionKind(req.res.GVK())
		return obj, http.StatusCreated, nil
	}
	release, err := s.allocate(ctx, req, obj)
	if err != nil {
		return nil, 0, err
	}
	obj.GetObjectKind().SetGroupVersionKind(req.res.GVK())
	out, err := s.store.create(ctx, req.res, req.namespace, m.GetName(), obj)
	if err != nil {
		release()
		return nil, 0, err
	}
	return out, http.StatusCreated, nil
}

func dryRun(r *http.Request) bool {
	for _, v := range r.URL.Query()["dryRun"] {
		if v == "All" {
			return true
		}
	}
	return false
}

// replace handles PUT of an object or of its status.
func (s *Server) replace(ctx context.Context, w http.ResponseWriter, r *http.Request, req *request) (runtime.Object, int, error) {
	data, err := readBody(r)
	if err != nil {
		return nil, 0, err
	}
	obj := req.res.New()
	if err := decodeObject(w, r, data, req.res.GVK(), obj); err != nil {
		return nil, 0, err
	}
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, 0, apierrors.NewBadRequest(err.Error())
	}
	if m.GetName() != req.name {
		return nil, 0, apierrors.NewBadRequest(fmt.Sprintf("the name of the object (%s) does not match the name on the URL (%s)", m.GetName(), req.name))
	}
	out, err := s.update(ctx, r, req, obj)
	return out, http.StatusOK, err
}

// update stores obj over the current object, enforcing optimistic
// concurrency against obj's resourceVersion (if set), keeping server-owned
// metadata, and writing only status (status subresource) or only the rest.
func (s *Server) update(ctx context.Context, r *http.Request, req *request, obj runtime.Object) (runtime.Object, error) {
	m, _ := meta.Accessor(obj)
	var finalizers []corev1.FinalizerName
	if ns, ok := obj.(*corev1.Namespace); ok {
		finalizers = ns.Spec.Finalizers
	}
	old, err := s.store.get(ctx, req.res, req.namespace, req.name)
	if err != nil {
		return nil, err
	}
	om, _ := meta.Accessor(old)
	rev, _ := strconv.ParseInt(om.GetResourceVersion(), 10, 64)
	if rv := m.GetResourceVersion(); rv != "" && rv != om.GetResourceVersion() {
		return nil, apierrors.NewConflict(req.res.GVR().GroupResource(), req.name,
			fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
	}
	if req.res.Namespaced {
		if m.GetNamespace() != "" && m.GetNamespace() != req.namespace {
			return nil, apierrors.NewBadRequest("the namespace of the provided object does not match the namespace sent on the request")
		}
		m.SetNamespace(req.namespace)
	}
	// Server-owned metadata survives any update.
	m.SetUID(om.GetUID())
	m.SetCreationTimestamp(om.GetCreationTimestamp())
	m.SetDeletionTimestamp(om.GetDeletionTimestamp())
	m.SetDeletionGracePeriodSeconds(om.GetDeletionGracePeriodSeconds())
	m.SetGeneration(om.GetGeneration())
	if req.sub == "status" {
		obj = withStatusOf(old.DeepCopyObject(), obj)
	} else if req.res.HasSubresource("status") {
		copyStatus(obj, old)
		if specChanged(obj, old) {
			m.SetGeneration(om.GetGeneration() + 1)
		}
	}
	if s.hooks.prepareForUpdate != nil && req.sub != "status" {
		// (A status update already carries the stored spec; running it
		// would also undo the status change of a namespace.)
		s.hooks.prepareForUpdate(obj, old)
	}
	if s.hooks.defaults != nil {
		s.hooks.defaults(obj)
	}
	if ns, ok := obj.(*corev1.Namespace); ok {
		// A namespace's spec.finalizers change only through /finalize (the
		// namespace controller removes "kubernetes" once the namespace is
		// empty); defaulting, which adds "kubernetes" on create, must not
		// bring it back.
		if req.sub == "finalize" {
			ns.Spec.Finalizers = finalizers
		} else {
			ns.Spec.Finalizers = old.(*corev1.Namespace).Spec.Finalizers
		}
	}
	if s.hooks.validateUpdate != nil {
		if errs := s.hooks.validateUpdate(obj, old); len(errs) > 0 {
			return nil, invalid(req.res, req.name, errs)
		}
	}
	obj.GetObjectKind().SetGroupVersionKind(req.res.GVK())
	if dryRun(r) {
		return obj, nil
	}
	// An object whose deletion is pending goes away once its finalizers are gone.
	if nm, _ := meta.Accessor(obj); nm.GetDeletionTimestamp() != nil && len(nm.GetFinalizers()) == 0 && !gracefulPod(obj) && !unfinalizedNamespace(obj) {
		if _, err := s.store.remove(ctx, req.res, req.namespace, req.name, rev); err != nil {
			return nil, err
		}
		return obj, nil
	}
	return s.store.update(ctx, req.res, req.namespace, req.name, rev, obj)
}

// unfinalizedNamespace reports a namespace whose spec.finalizers still hold
// it: it is removed only once those are gone too.
func unfinalizedNamespace(obj runtime.Object) bool {
	ns, ok := obj.(*corev1.Namespace)
	return ok && len(ns.Spec.Finalizers) > 0
}

// retryOnConflict reruns f while it fails with a Conflict that the request
// did not ask for (no resourceVersion precondition), as kube-apiserver's
// GuaranteedUpdate does.
func retryOnConflict(f func() (runtime.Object, error)) (runtime.Object, error) {
	var err error
	for i := 0; i < 5; i++ {
		var out runtime.Object
		out, err = f()
		if !apierrors.IsConflict(err) {
			return out, err
		}
	}
	return nil, err
}

// unmarshalInto decodes raw JSON into a fresh object of res's kind.
func unmarshalInto(res resource.Resource, data []byte) (runtime.Object, error) {
	obj := res.New()
	if err := json.Unmarshal(data, obj); err != nil {
		return nil, apierrors.NewBadRequest("the patched object is not valid: " + err.Error())
	}
	return obj, nil
}
