package apiserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	"synod/apiserver/resource"
)

// storage keeps objects in the raftstore through the etcd API, as
// kube-apiserver keeps them in etcd: one key per object under
// /registry/<resource>/[<namespace>/]<name>, JSON-encoded, with the key's
// mod revision as the object's resourceVersion.
type storage struct {
	kv      *clientv3.Client
	decoder runtime.Decoder
}

// registryPrefix is where every object lives, as in Kubernetes.
const registryPrefix = "/registry/"

func objectKey(res resource.Resource, ns, name string) string {
	if res.Namespaced {
		return registryPrefix + res.Name + "/" + ns + "/" + name
	}
	return registryPrefix + res.Name + "/" + name
}

// collectionPrefix is the key prefix of a list: all namespaces when ns is "".
func collectionPrefix(res resource.Resource, ns string) string {
	if res.Namespaced && ns != "" {
		return registryPrefix + res.Name + "/" + ns + "/"
	}
	return registryPrefix + res.Name + "/"
}

// decode turns a stored value into an object with its resourceVersion set.
func (s *storage) decode(res resource.Resource, kv *mvccpb.KeyValue) (runtime.Object, error) {
	obj := res.New()
	if err := json.Unmarshal(kv.Value, obj); err != nil {
		return nil, fmt.Errorf("decode %s: %w", kv.Key, err)
	}
	setRV(obj, kv.ModRevision)
	obj.GetObjectKind().SetGroupVersionKind(res.GVK())
	return obj, nil
}

func setRV(obj runtime.Object, rev int64) {
	if m, err := meta.Accessor(obj); err == nil {
		m.SetResourceVersion(strconv.FormatInt(rev, 10))
	}
}

// encode stores an object without its resourceVersion (the key's revision is
// the truth).
func encode(obj runtime.Object) ([]byte, error) {
	m, err := meta.Accessor(obj)
	if err != nil {
		return nil, err
	}
	rv := m.GetResourceVersion()
	m.SetResourceVersion("")
	defer m.SetResourceVersion(rv)
	return json.Marshal(obj)
}

// storeError maps etcd client errors onto Kubernetes API errors.
func storeError(err error) error {
	if err == nil {
		return nil
	}
	var st apierrors.APIStatus
	if errors.As(err, &st) {
		return err
	}
	if errors.Is(err, rpctypes.ErrCompacted) {
		return apierrors.NewResourceExpired("resourceVersion is too old: the history was compacted")
	}
	if errors.Is(err, rpctypes.ErrFutureRev) {
		return apierrors.NewTimeoutError("Too large resource version", 1)
	}
	if errors.Is(err, rpctypes.ErrRequestTooLarge) {
		return apierrors.NewRequestEntityTooLargeError("the object is larger than the store's 1.5 MiB request limit")
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, rpctypes.ErrTimeout) || errors.Is(err, rpctypes.ErrNoLeader) {
		return apierrors.NewServiceUnavailable("storage is unavailable: " + err.Error())
	}
	if st, ok := status.FromError(err); ok && st.Code() == codes.Unavailable {
		// The store could not answer (leader lost, member stopping): the
		// write's outcome may be unknown, as with a timeout.
		return apierrors.NewServiceUnavailable("storage is unavailable: " + st.Message())
	}
	return apierrors.NewInternalError(err)
}

func (s *storage) get(ctx context.Context, res resource.Resource, ns, name string) (runtime.Object, error) {
	return s.getWith(ctx, res, ns, name)
}

// getLocal reads from this master's replica without a read-index round trip:
// fresh to within replication lag, like the informer caches kube-apiserver's
// admission plugins read from.
func (s *storage) getLocal(ctx context.Context, res resource.Resource, ns, name string) (runtime.Object, error) {
	return s.getWith(ctx, res, ns, name, clientv3.WithSerializable())
}

func (s *storage) getWith(ctx context.Context, res resource.Resource, ns, name string, opts ...clientv3.OpOption) (runtime.Object, error) {
	resp, err := s.kv.Get(ctx, objectKey(res, ns, name), opts...)
	if err != nil {
		return nil, storeError(err)
	}
	if len(resp.Kvs) == 0 {
		return nil, apierrors.NewNotFound(res.GVR().GroupResource(), name)
	}
	return s.decode(res, resp.Kvs[0])
}

// create stores a new object; AlreadyExists if the key exists.
func (s *storage) create(ctx context.Context, res resource.Resource, ns, name string, obj runtime.Object) (runtime.Object, error) {
	data, err := encode(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	key := objectKey(res, ns, name)
	resp, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", 0)).Then(clientv3.OpPut(key, string(data))).Commit()
	if err != nil {
		return nil, storeError(err)
	}
	if !resp.Succeeded {
		return nil, apierrors.NewAlreadyExists(res.GVR().GroupResource(), name)
	}
	setRV(obj, resp.Header.Revision)
	return obj, nil
}

// update replaces an object if its revision is still rev (optimistic
// concurrency); Conflict otherwise, NotFound if it is gone.
func (s *storage) update(ctx context.Context, res resource.Resource, ns, name string, rev int64, obj runtime.Object) (runtime.Object, error) {
	data, err := encode(obj)
	if err != nil {
		return nil, apierrors.NewInternalError(err)
	}
	key := objectKey(res, ns, name)
	resp, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, string(data))).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return nil, storeError(err)
	}
	if !resp.Succeeded {
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return nil, apierrors.NewNotFound(res.GVR().GroupResource(), name)
		}
		return nil, apierrors.NewConflict(res.GVR().GroupResource(), name,
			errors.New("the object has been modified; please apply your changes to the latest version and try again"))
	}
	setRV(obj, resp.Header.Revision)
	return obj, nil
}

// remove deletes an object if its revision is still rev.
func (s *storage) remove(ctx context.Context, res resource.Resource, ns, name string, rev int64) (int64, error) {
	key := objectKey(res, ns, name)
	resp, err := s.kv.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpDelete(key)).Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return 0, storeError(err)
	}
	if !resp.Succeeded {
		if len(resp.Responses[0].GetResponseRange().Kvs) == 0 {
			return 0, apierrors.NewNotFound(res.GVR().GroupResource(), name)
		}
		return 0, apierrors.NewConflict(res.GVR().GroupResource(), name, errors.New("the object has been modified"))
	}
	return resp.Header.Revision, nil
}

// listOptions are the storage side of a list request.
type listOptions struct {
	limit    int64
	cont     string // continue token from a previous page
	rev      int64  // read at this revision (0: latest)
	minRev   int64  // NotOlderThan: the read must be at least this new
	filter   func(runtime.Object) bool
	countAll bool
}

// continueToken is what `continue` carries: where the next page starts and
// at which revision the list is read, so pages are a consistent snapshot.
type continueToken struct {
	Rev   int64  `json:"rv"`
	Start string `json:"start"`
}

func encodeContinue(rev int64, start string) string {
	b, _ := json.Marshal(continueToken{Rev: rev, Start: start})
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeContinue(s string) (continueToken, error) {
	var t continueToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(b, &t)
	}
	if err != nil || t.Rev <= 0 || t.Start == "" {
		return t, apierrors.NewBadRequest("invalid continue token")
	}
	return t, nil
}

// list reads a page of a collection. The returned revision is the list's
// resourceVersion; next is the continue token ("" on the last page).
func (s *storage) list(ctx context.Context, res resource.Resource, ns string, o listOptions) (items []runtime.Object, rev int64, next string, err error) {
	prefix := collectionPrefix(res, ns)
	start := prefix
	rev = o.rev
	if o.cont != "" {
		t, err := decodeContinue(o.cont)
		if err != nil {
			return nil, 0, "", err
		}
		if !strings.HasPrefix(t.Start, prefix) {
			return nil, 0, "", apierrors.NewBadRequest("continue token does not belong to this list")
		}
		start, rev = t.Start, t.Rev
	}
	end := clientv3.GetPrefixRangeEnd(prefix)
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end)}
		if rev > 0 {
			opts = append(opts, clientv3.WithRev(rev))
		}
		batch := int64(0)
		if o.limit > 0 {
			batch = o.limit - int64(len(items)) + 1
			opts = append(opts, clientv3.WithLimit(max(batch, 32)))
		}
		resp, err := s.kv.Get(ctx, start, opts...)
		if err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) && o.cont != "" {
				return nil, 0, "", apierrors.NewResourceExpired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.")
			}
			return nil, 0, "", storeError(err)
		}
		if rev == 0 {
			rev = resp.Header.Revision
		}
		if o.minRev > 0 && rev < o.minRev {
			return nil, 0, "", apierrors.NewTimeoutError(fmt.Sprintf("Too large resource version: %d, current: %d", o.minRev, rev), 1)
		}
		for _, kv := range resp.Kvs {
			if o.limit > 0 && int64(len(items)) == o.limit {
				return items, rev, encodeContinue(rev, string(kv.Key)), nil
			}
			obj, err := s.decode(res, kv)
			if err != nil {
				return nil, 0, "", apierrors.NewInternalError(err)
			}
			if o.filter == nil || o.filter(obj) {
				items = append(items, obj)
			}
		}
		if !resp.More || len(resp.Kvs) == 0 {
			return items, rev, "", nil
		}
		start = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
}
