package raftstore

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/metadata"

	"synod/raftstore/mvcc"
)

// watchService is etcd's Watch service, served by every member from its own
// replica. Each watcher pulls events from the store's revision-ordered event
// log starting at its own cursor, so delivery is ordered, gap-free and
// duplicate-free by construction, and a slow watcher only lags itself.
type watchService struct{ s *Server }

var _ pb.WatchServer = (*watchService)(nil)

// maxEventsPerResponse bounds one response; a revision is never split.
const maxEventsPerResponse = 1000

type watchStream struct {
	s      *Server
	stream pb.Watch_WatchServer
	ctx    context.Context
	cancel context.CancelFunc

	// sendMu serialises Send and guards every watcher's next, watchers and
	// progressPending, so that progress answers are consistent with what was
	// sent before them.
	sendMu          sync.Mutex
	watchers        map[int64]*watcher
	nextID          int64
	progressPending bool

	wg sync.WaitGroup
}

type watcher struct {
	id             int64
	key, end       []byte
	prevKV         bool
	progressNotify bool
	noPut, noDel   bool
	next           int64 // first revision not yet delivered
	cancel         context.CancelFunc
}

func (w *watchService) Watch(stream pb.Watch_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	ws := &watchStream{s: w.s, stream: stream, ctx: ctx, cancel: cancel, watchers: map[int64]*watcher{}}
	defer func() {
		cancel()
		ws.wg.Wait()
	}()
	errc := make(chan error, 2)
	go func() { errc <- ws.recvLoop() }()
	ws.wg.Add(1)
	go func() {
		defer ws.wg.Done()
		ws.progressLoop()
	}()
	if requiresLeader(ctx) {
		go func() { errc <- ws.monitorLeader() }()
	}
	select {
	case err := <-errc:
		return err
	case <-w.s.stopCh:
		return rpctypes.ErrGRPCStopped
	}
}

func requiresLeader(ctx context.Context) bool {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return false
	}
	vs := md.Get(rpctypes.MetadataRequireLeaderKey)
	return len(vs) > 0 && vs[0] == rpctypes.MetadataHasLeader
}

// monitorLeader ends a "hasleader" stream when the cluster has had no leader
// for a few election timeouts, as etcd does, so clients move elsewhere.
func (ws *watchStream) monitorLeader() error {
	t := time.NewTicker(ws.s.cfg.ElectionTimeout)
	defer t.Stop()
	missed := 0
	for {
		select {
		case <-ws.ctx.Done():
			return nil
		case <-t.C:
		}
		if _, id := ws.s.raft.LeaderWithID(); id == "" {
			missed++
			if missed >= 3 {
				return rpctypes.ErrGRPCNoLeader
			}
		} else {
			missed = 0
		}
	}
}

func (ws *watchStream) recvLoop() error {
	for {
		req, err := ws.stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		switch r := req.RequestUnion.(type) {
		case *pb.WatchRequest_CreateRequest:
			if err := ws.create(r.CreateRequest); err != nil {
				return err
			}
		case *pb.WatchRequest_CancelRequest:
			if err := ws.cancelWatch(r.CancelRequest.WatchId); err != nil {
				return err
			}
		case *pb.WatchRequest_ProgressRequest:
			if err := ws.requestProgress(); err != nil {
				return err
			}
		}
	}
}

func (ws *watchStream) send(r *pb.WatchResponse) error {
	if err := ws.stream.Send(r); err != nil {
		ws.cancel()
		return err
	}
	return nil
}

func (ws *watchStream) create(cr *pb.WatchCreateRequest) error {
	kv := ws.s.fsm.kv
	ws.sendMu.Lock()
	defer ws.sendMu.Unlock()
	rev := kv.Rev()
	id := cr.WatchId
	if id == 0 || id == -1 {
		for {
			if _, taken := ws.watchers[ws.nextID]; !taken {
				break
			}
			ws.nextID++
		}
		id = ws.nextID
		ws.nextID++
	} else if _, taken := ws.watchers[id]; taken {
		return ws.send(&pb.WatchResponse{Header: ws.s.header(rev), WatchId: id, Created: true, Canceled: true,
			CancelReason: "watcher ID already exists"})
	}
	if len(cr.Key) == 0 {
		return ws.send(&pb.WatchResponse{Header: ws.s.header(rev), WatchId: id, Created: true, Canceled: true,
			CancelReason: rpctypes.ErrGRPCEmptyKey.Error()})
	}
	w := &watcher{id: id, key: cr.Key, end: cr.RangeEnd, prevKV: cr.PrevKv, progressNotify: cr.ProgressNotify, next: cr.StartRevision}
	if w.next <= 0 {
		w.next = rev + 1
	}
	for _, f := range cr.Filters {
		switch f {
		case pb.WatchCreateRequest_NOPUT:
			w.noPut = true
		case pb.WatchCreateRequest_NODELETE:
			w.noDel = true
		}
	}
	if err := ws.send(&pb.WatchResponse{Header: ws.s.header(rev), WatchId: id, Created: true}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ws.ctx)
	w.cancel = cancel
	ws.watchers[id] = w
	ws.wg.Add(1)
	ws.s.metrics.watchersCurrent.Inc()
	go func() {
		defer ws.wg.Done()
		defer ws.s.metrics.watchersCurrent.Dec()
		ws.run(ctx, w)
	}()
	return nil
}

func (ws *watchStream) cancelWatch(id int64) error {
	ws.sendMu.Lock()
	defer ws.sendMu.Unlock()
	w, ok := ws.watchers[id]
	if !ok {
		return nil
	}
	w.cancel()
	delete(ws.watchers, id)
	return ws.send(&pb.WatchResponse{Header: ws.s.header(0), WatchId: id, Canceled: true})
}

// run delivers w's events until it is cancelled.
func (ws *watchStream) run(ctx context.Context, w *watcher) {
	kv := ws.s.fsm.kv
	for {
		changed := kv.Changed()
		evs, next, err := kv.Events(w.next, w.key, w.end, maxEventsPerResponse)
		if errors.Is(err, mvcc.ErrCompacted) {
			ws.sendMu.Lock()
			if _, ok := ws.watchers[w.id]; ok {
				delete(ws.watchers, w.id)
				ws.send(&pb.WatchResponse{Header: ws.s.header(0), WatchId: w.id, Canceled: true,
					CompactRevision: kv.CompactRev(), CancelReason: rpctypes.ErrGRPCCompacted.Error()})
			}
			ws.sendMu.Unlock()
			return
		}
		if err != nil {
			ws.s.log.Warn("watch read failed", "err", err)
			ws.cancel()
			return
		}
		out := w.filter(evs)
		ws.sendMu.Lock()
		if ctx.Err() != nil {
			ws.sendMu.Unlock()
			return
		}
		if len(out) > 0 {
			if ws.send(&pb.WatchResponse{Header: ws.s.header(next - 1), WatchId: w.id, Events: out}) != nil {
				ws.sendMu.Unlock()
				return
			}
		}
		w.next = next
		if ws.progressPending {
			ws.unsafeTryProgress()
		}
		ws.sendMu.Unlock()
		if next <= kv.Rev() {
			continue // more to catch up on
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		}
	}
}

// filter applies the watcher's filters and prev_kv choice without touching
// the store's shared events.
func (w *watcher) filter(evs []*mvcc.Event) []*mvccpb.Event {
	out := make([]*mvccpb.Event, 0, len(evs))
	for _, e := range evs {
		if (e.Type == mvccpb.PUT && w.noPut) || (e.Type == mvccpb.DELETE && w.noDel) {
			continue
		}
		if !w.prevKV && e.PrevKv != nil {
			c := *e
			c.PrevKv = nil
			e = &c
		}
		out = append(out, e)
	}
	return out
}

// requestProgress answers a progress request with the current revision once
// every watcher on the stream has delivered everything up to it (etcd's
// RequestProgressAll), then with watch ID -1.
func (ws *watchStream) requestProgress() error {
	ws.sendMu.Lock()
	defer ws.sendMu.Unlock()
	ws.progressPending = true
	return ws.unsafeTryProgress()
}

// unsafeTryProgress needs sendMu held.
func (ws *watchStream) unsafeTryProgress() error {
	rev := ws.s.fsm.kv.Rev()
	for _, w := range ws.watchers {
		if w.next <= rev {
			return nil
		}
	}
	ws.progressPending = false
	return ws.send(&pb.WatchResponse{Header: ws.s.header(rev), WatchId: -1})
}

// progressLoop sends periodic progress notifications to synced watchers that
// asked for them.
func (ws *watchStream) progressLoop() {
	t := time.NewTicker(ws.s.cfg.ProgressNotifyInterval)
	defer t.Stop()
	for {
		select {
		case <-ws.ctx.Done():
			return
		case <-t.C:
		}
		ws.sendMu.Lock()
		rev := ws.s.fsm.kv.Rev()
		for _, w := range ws.watchers {
			if w.progressNotify && w.next > rev {
				ws.send(&pb.WatchResponse{Header: ws.s.header(rev), WatchId: w.id})
			}
		}
		ws.sendMu.Unlock()
	}
}
