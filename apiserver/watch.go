package apiserver

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/apimachinery/pkg/watch"
)

// defaultWatchTimeout ends watches that gave no timeoutSeconds, so clients
// rebalance across masters now and then (kube-apiserver picks 30-60 min).
const defaultWatchTimeout = 30 * time.Minute

// bookmarkInterval is how often a watch that allows bookmarks gets one.
const bookmarkInterval = 30 * time.Second

// watchStream writes WatchEvents as a chunked JSON stream.
type watchStream struct {
	s       *Server
	w       http.ResponseWriter
	r       *http.Request
	req     *request
	flusher http.Flusher
	table   bool
	headers bool // a Table's column definitions were sent
	// metadata sends PartialObjectMetadata instead of whole objects.
	metadata bool
}

func (ws *watchStream) send(typ watch.EventType, obj runtime.Object) error {
	var payload any = obj
	if ws.metadata && typ != watch.Error {
		if p, err := metadataOf(obj); err == nil {
			payload = p
		}
	} else if ws.table && typ != watch.Bookmark && typ != watch.Error {
		t, err := ws.s.tableFor(ws.r, ws.req.res, []runtime.Object{obj})
		if err == nil {
			if ws.headers {
				t.ColumnDefinitions = nil
			}
			ws.headers = true
			if m, err := meta.Accessor(obj); err == nil {
				t.ResourceVersion = m.GetResourceVersion()
			}
			payload = t
		}
	}
	raw, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	b, err := json.Marshal(metav1.WatchEvent{Type: string(typ), Object: runtime.RawExtension{Raw: raw}})
	if err != nil {
		return err
	}
	if _, err := ws.w.Write(append(b, '\n')); err != nil {
		return err
	}
	ws.flusher.Flush()
	return nil
}

func (ws *watchStream) bookmark(rev int64, initialEnd bool) error {
	obj := ws.req.res.New()
	m, _ := meta.Accessor(obj)
	m.SetResourceVersion(strconv.FormatInt(rev, 10))
	if initialEnd {
		m.SetAnnotations(map[string]string{metav1.InitialEventsAnnotationKey: "true"})
	}
	obj.GetObjectKind().SetGroupVersionKind(ws.req.res.GVK())
	return ws.send(watch.Bookmark, obj)
}

func (ws *watchStream) sendError(err error) {
	st := apierrors.NewInternalError(err).Status()
	if se, ok := err.(apierrors.APIStatus); ok {
		st = se.Status()
	}
	st.Kind, st.APIVersion = "Status", "v1"
	ws.send(watch.Error, &st)
}

// serveWatch streams changes of a collection from a resourceVersion.
func (s *Server) serveWatch(w http.ResponseWriter, r *http.Request, req *request) {
	q := r.URL.Query()
	ls, fs, err := selectors(r, req.res)
	if err != nil {
		writeError(w, err)
		return
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, apierrors.NewInternalError(errString("streaming unsupported")))
		return
	}
	bookmarks := q.Get("allowWatchBookmarks") == "true"
	sendInitial := q.Get("sendInitialEvents") == "true"
	rv := q.Get("resourceVersion")
	if sendInitial && (!bookmarks || q.Get("resourceVersionMatch") != string(metav1.ResourceVersionMatchNotOlderThan)) {
		writeError(w, apierrors.NewInvalid(metav1.SchemeGroupVersion.WithKind("ListOptions").GroupKind(), "", field.ErrorList{
			field.Forbidden(field.NewPath("sendInitialEvents"), "sendInitialEvents requires allowWatchBookmarks=true and resourceVersionMatch=NotOlderThan")}))
		return
	}
	timeout := defaultWatchTimeout
	if v := q.Get("timeoutSeconds"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeError(w, apierrors.NewBadRequest("invalid timeoutSeconds"))
			return
		}
		timeout = time.Duration(n) * time.Second
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	filter := func(o runtime.Object) bool { return matches(ls, fs, o) }

	// Where the watch starts, and which synthetic ADDED events come first:
	// unset or "0" means "current state, then changes" (as does
	// sendInitialEvents); N means "changes after N".
	var initial []runtime.Object
	var start int64
	if sendInitial || rv == "" || rv == "0" {
		o := listOptions{filter: filter}
		if sendInitial && rv != "" && rv != "0" {
			n, _ := strconv.ParseInt(rv, 10, 64)
			o.minRev = n
		}
		items, rev, _, err := s.store.list(ctx, req.res, req.namespace, o)
		if err != nil {
			writeError(w, err)
			return
		}
		if q.Get("sendInitialEvents") != "false" {
			initial = items
		}
		start = rev + 1
	} else {
		n, err := strconv.ParseInt(rv, 10, 64)
		if err != nil || n < 0 {
			writeError(w, apierrors.NewBadRequest("invalid resourceVersion"))
			return
		}
		start = n + 1
	}
	ws := &watchStream{s: s, w: w, r: r, req: req, flusher: flusher, table: wantsTable(r) && s.hooks.table != nil, metadata: wantsMetadata(r)}
	if ws.table {
		w.Header().Set("Content-Type", tableContentType)
	} else {
		w.Header().Set("Content-Type", "application/json")
	}
	w.Header().Set("Transfer-Encoding", "chunked")
	w.WriteHeader(http.StatusOK)
	flusher.Flush()
	for _, obj := range initial {
		if ws.send(watch.Added, obj) != nil {
			return
		}
	}
	if sendInitial {
		if ws.bookmark(start-1, true) != nil {
			return
		}
	}
	s.streamChanges(ctx, ws, start, filter, bookmarks)
}

// streamChanges relays store events from start on until ctx ends.
func (s *Server) streamChanges(ctx context.Context, ws *watchStream, start int64, filter func(runtime.Object) bool, bookmarks bool) {
	prefix := collectionPrefix(ws.req.res, ws.req.namespace)
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := s.store.kv.Watch(wctx, prefix, clientv3.WithPrefix(), clientv3.WithRev(start), clientv3.WithPrevKV(), clientv3.WithProgressNotify())
	tick := time.NewTicker(bookmarkInterval)
	defer tick.Stop()
	last := start - 1
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if bookmarks {
				s.store.kv.RequestProgress(wctx)
			}
		case resp, ok := <-wch:
			if !ok {
				return
			}
			if resp.CompactRevision != 0 {
				ws.sendError(apierrors.NewResourceExpired("too old resource version: " + strconv.FormatInt(start-1, 10) + " (" + strconv.FormatInt(resp.CompactRevision, 10) + ")"))
				return
			}
			if err := resp.Err(); err != nil {
				ws.sendError(storeError(err))
				return
			}
			if resp.IsProgressNotify() {
				if bookmarks && resp.Header.Revision > last {
					last = resp.Header.Revision
					if ws.bookmark(last, false) != nil {
						return
					}
				}
				continue
			}
			for _, ev := range resp.Events {
				typ, obj := s.convertEvent(ws.req, ev, filter)
				last = ev.Kv.ModRevision
				if obj == nil {
					continue
				}
				if ws.send(typ, obj) != nil {
					return
				}
			}
		}
	}
}

// convertEvent turns a store event into a watch event for a filtered watch:
// an object that starts or stops matching is ADDED or DELETED, as Kubernetes
// does.
func (s *Server) convertEvent(req *request, ev *clientv3.Event, filter func(runtime.Object) bool) (watch.EventType, runtime.Object) {
	var cur, prev runtime.Object
	if ev.PrevKv != nil {
		prev, _ = s.store.decode(req.res, ev.PrevKv)
	}
	if ev.Type == clientv3.EventTypeDelete {
		if prev == nil || !filter(prev) {
			return "", nil
		}
		setRV(prev, ev.Kv.ModRevision)
		return watch.Deleted, prev
	}
	cur, err := s.store.decode(req.res, ev.Kv)
	if err != nil {
		return "", nil
	}
	curOK, prevOK := filter(cur), prev != nil && filter(prev)
	switch {
	case curOK && prevOK:
		return watch.Modified, cur
	case curOK:
		return watch.Added, cur
	case prevOK:
		return watch.Deleted, cur
	}
	return "", nil
}
