package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv1 "k8s.io/api/autoscaling/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/validation/field"
)

// scaleOf presents a Deployment or ReplicaSet as an autoscaling/v1 Scale.
func scaleOf(obj runtime.Object) (*autoscalingv1.Scale, error) {
	var (
		om       metav1.ObjectMeta
		replicas *int32
		status   int32
		sel      *metav1.LabelSelector
	)
	switch o := obj.(type) {
	case *appsv1.Deployment:
		om, replicas, status, sel = o.ObjectMeta, o.Spec.Replicas, o.Status.Replicas, o.Spec.Selector
	case *appsv1.ReplicaSet:
		om, replicas, status, sel = o.ObjectMeta, o.Spec.Replicas, o.Status.Replicas, o.Spec.Selector
	default:
		return nil, apierrors.NewNotFound(autoscalingv1.Resource("scale"), "")
	}
	sc := &autoscalingv1.Scale{
		TypeMeta:   metav1.TypeMeta{Kind: "Scale", APIVersion: "autoscaling/v1"},
		ObjectMeta: metav1.ObjectMeta{Name: om.Name, Namespace: om.Namespace, UID: om.UID, ResourceVersion: om.ResourceVersion, CreationTimestamp: om.CreationTimestamp},
		Status:     autoscalingv1.ScaleStatus{Replicas: status},
	}
	if replicas != nil {
		sc.Spec.Replicas = *replicas
	}
	if s, err := metav1.LabelSelectorAsSelector(sel); err == nil {
		sc.Status.Selector = s.String()
	}
	return sc, nil
}

func setReplicas(obj runtime.Object, n int32) {
	switch o := obj.(type) {
	case *appsv1.Deployment:
		o.Spec.Replicas = &n
	case *appsv1.ReplicaSet:
		o.Spec.Replicas = &n
	}
}

// serveScale handles get, update and patch of deployments/scale and
// replicasets/scale.
func (s *Server) serveScale(ctx context.Context, r *http.Request, req *request) (runtime.Object, error) {
	cur, err := s.store.get(ctx, req.res, req.namespace, req.name)
	if err != nil {
		return nil, err
	}
	sc, err := scaleOf(cur)
	if err != nil {
		return nil, err
	}
	if req.verb == "get" {
		return sc, nil
	}
	data, err := readBody(r)
	if err != nil {
		return nil, err
	}
	want := &autoscalingv1.Scale{}
	switch req.verb {
	case "update":
		if err := decodeAny(data, want); err != nil {
			return nil, err
		}
	case "patch":
		mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
		curJSON, _ := json.Marshal(sc)
		var patched []byte
		switch types.PatchType(mt) {
		case types.MergePatchType, types.StrategicMergePatchType:
			patched, err = jsonpatch.MergePatch(curJSON, data)
		case types.JSONPatchType:
			p, perr := jsonpatch.DecodePatch(data)
			if perr != nil {
				return nil, apierrors.NewBadRequest(perr.Error())
			}
			patched, err = p.Apply(curJSON)
		default:
			return nil, unsupportedMediaType(mt)
		}
		if err == nil {
			err = json.Unmarshal(patched, want)
		}
		if err != nil {
			return nil, apierrors.NewBadRequest(err.Error())
		}
	default:
		return nil, apierrors.NewMethodNotSupported(req.res.GVR().GroupResource(), r.Method)
	}
	if want.Spec.Replicas < 0 {
		return nil, apierrors.NewInvalid(autoscalingv1.SchemeGroupVersion.WithKind("Scale").GroupKind(), req.name,
			field.ErrorList{field.Invalid(field.NewPath("spec", "replicas"), want.Spec.Replicas, "must be greater than or equal to 0")})
	}
	if want.ResourceVersion != "" && want.ResourceVersion != sc.ResourceVersion {
		return nil, apierrors.NewConflict(req.res.GVR().GroupResource(), req.name, fmt.Errorf("the object has been modified; please apply your changes to the latest version and try again"))
	}
	obj := cur.DeepCopyObject()
	setReplicas(obj, want.Spec.Replicas)
	main := *req
	main.sub = ""
	out, err := s.update(ctx, r, &main, obj)
	if err != nil {
		return nil, err
	}
	return scaleOf(out)
}

// bind handles POST pods/{name}/binding: the scheduler's way to set
// spec.nodeName, once.
func (s *Server) bind(ctx context.Context, r *http.Request, req *request) (runtime.Object, int, error) {
	if req.verb != "create" {
		return nil, 0, apierrors.NewMethodNotSupported(req.res.GVR().GroupResource(), r.Method)
	}
	data, err := readBody(r)
	if err != nil {
		return nil, 0, err
	}
	b := &corev1.Binding{}
	if err := decodeAny(data, b); err != nil {
		return nil, 0, err
	}
	if b.Target.Kind != "" && b.Target.Kind != "Node" {
		return nil, 0, apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Binding").GroupKind(), req.name,
			field.ErrorList{field.NotSupported(field.NewPath("target", "kind"), b.Target.Kind, []string{"Node"})})
	}
	if b.Target.Name == "" {
		return nil, 0, apierrors.NewInvalid(corev1.SchemeGroupVersion.WithKind("Binding").GroupKind(), req.name,
			field.ErrorList{field.Required(field.NewPath("target", "name"), "")})
	}
	attempt := 0
	_, err = retryOnConflict(func() (runtime.Object, error) {
		// The first read is this master's replica (no read-index round
		// trip): the write below is conditional on the revision read, so
		// a stale read can only fail as a Conflict, and the retry reads
		// linearizably. Schedulers bind pods created a while ago, so the
		// local copy is almost always current.
		var cur runtime.Object
		var err error
		if attempt++; attempt == 1 {
			cur, err = s.store.getLocal(ctx, req.res, req.namespace, req.name)
		}
		if attempt > 1 || apierrors.IsNotFound(err) { // not here yet, perhaps
			cur, err = s.store.get(ctx, req.res, req.namespace, req.name)
		}
		if err != nil {
			return nil, err
		}
		pod := cur.(*corev1.Pod)
		if pod.DeletionTimestamp != nil {
			return nil, apierrors.NewConflict(req.res.GVR().GroupResource(), req.name, fmt.Errorf("pod %s is being deleted, cannot be assigned to a host", req.name))
		}
		if pod.Spec.NodeName != "" {
			return nil, apierrors.NewConflict(req.res.GVR().GroupResource(), req.name, fmt.Errorf("pod %s is already assigned to node %q", req.name, pod.Spec.NodeName))
		}
		if b.UID != "" && b.UID != pod.UID {
			return nil, apierrors.NewConflict(req.res.GVR().GroupResource(), req.name, fmt.Errorf("precondition failed: UID mismatch"))
		}
		pod.Spec.NodeName = b.Target.Name
		// PodScheduled=True replaces the scheduler's earlier
		// PodScheduled=False (Unschedulable), as UpdatePodCondition does.
		scheduled := corev1.PodCondition{Type: corev1.PodScheduled, Status: corev1.ConditionTrue, LastTransitionTime: metav1.Now()}
		replaced := false
		for i := range pod.Status.Conditions {
			if pod.Status.Conditions[i].Type == corev1.PodScheduled {
				pod.Status.Conditions[i], replaced = scheduled, true
			}
		}
		if !replaced {
			pod.Status.Conditions = append(pod.Status.Conditions, scheduled)
		}
		var rev int64
		fmt.Sscan(pod.ResourceVersion, &rev)
		return s.store.update(ctx, req.res, req.namespace, req.name, rev, pod)
	})
	if err != nil {
		return nil, 0, err
	}
	return statusSuccess(nil), http.StatusCreated, nil
}
