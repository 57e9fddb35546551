package controller

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// Claim returns the objects owner controls among objs after adopting
// matching orphans and releasing owned objects that no longer match, as
// Kubernetes' ControllerRefManager does (k8s.io/kubernetes is not imported,
// see pods.go). Before its first adoption it rechecks owner with an
// uncached read (recheck), so that nothing is adopted by an owner that is
// already gone or being deleted: the garbage collector would never clean
// that up. patch applies a strategic merge patch to an object's metadata.
func Claim[T metav1.Object](ctx context.Context, owner metav1.Object, ownerKind schema.GroupVersionKind, selector labels.Selector, objs []T,
	recheck func(ctx context.Context) (metav1.Object, error), patch func(ctx context.Context, obj T, p []byte) error) ([]T, error) {
	kind := strings.ToLower(ownerKind.Kind)
	var (
		claimed  []T
		errs     []error
		checked  bool
		adoptErr error
	)
	canAdopt := func() error {
		if !checked {
			checked = true
			fresh, err := recheck(ctx)
			switch {
			case err != nil:
				adoptErr = fmt.Errorf("recheck %s before adopting: %w", Key(owner), err)
			case fresh.GetUID() != owner.GetUID():
				adoptErr = fmt.Errorf("%s %s is gone: uid %s, wanted %s", kind, Key(owner), fresh.GetUID(), owner.GetUID())
			case fresh.GetDeletionTimestamp() != nil:
				adoptErr = fmt.Errorf("%s %s is being deleted", kind, Key(owner))
			}
		}
		return adoptErr
	}
	for _, obj := range objs {
		ref := metav1.GetControllerOf(obj)
		matches := selector.Matches(labels.Set(obj.GetLabels()))
		switch {
		case ref != nil && ref.UID != owner.GetUID():
			// Someone else's.
		case ref != nil && matches:
			claimed = append(claimed, obj)
		case ref != nil:
			if owner.GetDeletionTimestamp() != nil {
				continue // the garbage collector takes care of it
			}
			err := patch(ctx, obj, ReleasePatch(owner.GetUID(), obj.GetUID()))
			if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsGone(err) {
				errs = append(errs, err)
			}
		case !matches || owner.GetDeletionTimestamp() != nil || obj.GetDeletionTimestamp() != nil:
			// An orphan that is not ours to take.
		default:
			if err := canAdopt(); err != nil {
				errs = append(errs, err)
				continue
			}
			if err := patch(ctx, obj, AdoptPatch(owner, ownerKind, obj.GetUID())); err != nil {
				if !apierrors.IsNotFound(err) {
					errs = append(errs, err)
				}
				continue
			}
			claimed = append(claimed, obj)
		}
	}
	return claimed, errors.Join(errs...)
}

// AdoptPatch makes owner the controller of the object with uid (the uid
// makes the patch fail on a recreated object of the same name).
func AdoptPatch(owner metav1.Object, ownerKind schema.GroupVersionKind, uid types.UID) []byte {
	return ownerRefPatch(map[string]any{
		"apiVersion": ownerKind.GroupVersion().String(), "kind": ownerKind.Kind,
		"name": owner.GetName(), "uid": owner.GetUID(), "controller": true, "blockOwnerDeletion": true,
	}, uid)
}

// ReleasePatch removes the owner reference to ownerUID from the object
// with uid.
func ReleasePatch(ownerUID, uid types.UID) []byte {
	return ownerRefPatch(map[string]any{"$patch": "delete", "uid": ownerUID}, uid)
}

func ownerRefPatch(ref map[string]any, uid types.UID) []byte {
	// Only strings, bools and UIDs: Marshal cannot fail.
	b, _ := json.Marshal(map[string]any{"metadata": map[string]any{"ownerReferences": []any{ref}, "uid": uid}})
	return b
}
