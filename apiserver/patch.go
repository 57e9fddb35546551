package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"mime"
	"net/http"

	jsonpatch "gopkg.in/evanphx/json-patch.v4"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/strategicpatch"
)

// patch applies a JSON, merge or strategic-merge patch to the current object
// and stores the result like an update, retrying on a conflict the client
// did not ask for.
func (s *Server) patch(ctx context.Context, r *http.Request, req *request) (runtime.Object, error) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return nil, unsupportedMediaType(r.Header.Get("Content-Type"))
	}
	pt := types.PatchType(mt)
	switch pt {
	case types.JSONPatchType, types.MergePatchType, types.StrategicMergePatchType:
	case types.ApplyYAMLPatchType, types.ApplyCBORPatchType:
		return nil, unsupportedMediaType(mt + " (server-side apply is not supported yet; use kubectl apply without --server-side)")
	default:
		return nil, unsupportedMediaType(mt)
	}
	patchBytes, err := readBody(r)
	if err != nil {
		return nil, err
	}
	return retryOnConflict(func() (runtime.Object, error) {
		cur, err := s.store.get(ctx, req.res, req.namespace, req.name)
		if err != nil {
			return nil, err
		}
		curJSON, err := json.Marshal(cur)
		if err != nil {
			return nil, apierrors.NewInternalError(err)
		}
		var patched []byte
		switch pt {
		case types.JSONPatchType:
			p, perr := jsonpatch.DecodePatch(patchBytes)
			if perr != nil {
				return nil, apierrors.NewBadRequest(perr.Error())
			}
			patched, err = p.Apply(curJSON)
		case types.MergePatchType:
			patched, err = jsonpatch.MergePatch(curJSON, patchBytes)
		case types.StrategicMergePatchType:
			patched, err = strategicpatch.StrategicMergePatch(curJSON, patchBytes, req.res.New())
		}
		if err != nil {
			return nil, apierrors.NewBadRequest(fmt.Sprintf("the patch could not be applied: %v", err))
		}
		obj, err := unmarshalInto(req.res, patched)
		if err != nil {
			return nil, err
		}
		m, _ := meta.Accessor(obj)
		cm, _ := meta.Accessor(cur)
		if m.GetName() != cm.GetName() {
			return nil, apierrors.NewBadRequest("the name of an object cannot be changed by a patch")
		}
		// A patch that sets no resourceVersion applies to whatever is current.
		if m.GetResourceVersion() == "" {
			m.SetResourceVersion(cm.GetResourceVersion())
		}
		out, err := s.update(ctx, r, req, obj)
		if apierrors.IsConflict(err) && m.GetResourceVersion() != cm.GetResourceVersion() {
			return nil, err
		}
		return out, err
	})
}

func unsupportedMediaType(mt string) error {
	return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: http.StatusUnsupportedMediaType,
		Reason: metav1.StatusReasonUnsupportedMediaType, Message: "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json; got " + mt}}
}
