package leader

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Defaults fail over quickly on a LAN; Kubernetes uses 15s/10s/2s.
//
// The retry period is short on purpose: after a leader dies, a candidate
// first notices the last renewal up to one jittered retry (up to 2.2 x the
// period) late, and tries to acquire up to another one after the lease has
// run out, so a takeover takes up to lease + 4.4 x retry. With 250ms that is
// lease + 1.1s; the price is four small writes a second per lease.
const (
	DefaultLeaseDuration = 6 * time.Second
	DefaultRenewDeadline = 4 * time.Second
	DefaultRetryPeriod   = 250 * time.Millisecond
)

// Config describes one election.
type Config struct {
	Client    kubernetes.Interface // used only for the Lease
	Namespace string               // usually kube-system
	Name      string               // lease name = component name, e.g. kube-scheduler
	Identity  string               // holder identity: master name + "_" + pid

	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration

	Logger        *slog.Logger
	Metrics       *Metrics                   // may be nil
	EventRecorder resourcelock.EventRecorder // may be nil; gets "<identity> became leader" on the Lease
}

// Elector campaigns for one lease and runs work while it holds it.
type Elector struct {
	cfg  Config
	lock *trackingLock
	log  *slog.Logger

	mu     sync.Mutex
	active bool // a term's work is running
}

// New checks cfg and returns an Elector; call Run to campaign.
func New(cfg Config) (*Elector, error) {
	if cfg.LeaseDuration == 0 {
		cfg.LeaseDuration = DefaultLeaseDuration
	}
	if cfg.RenewDeadline == 0 {
		cfg.RenewDeadline = DefaultRenewDeadline
	}
	if cfg.RetryPeriod == 0 {
		cfg.RetryPeriod = DefaultRetryPeriod
	}
	if cfg.Namespace == "" {
		cfg.Namespace = metav1.NamespaceSystem
	}
	if cfg.Name == "" || cfg.Identity == "" {
		return nil, errors.New("leader: lease name and identity are required")
	}
	if cfg.LeaseDuration%time.Second != 0 {
		// The Lease stores whole seconds and the other candidates go by
		// the stored value: 1.5s would be read as 1s.
		return nil, fmt.Errorf("leader: lease duration %s must be a whole number of seconds", cfg.LeaseDuration)
	}
	if cfg.LeaseDuration <= cfg.RenewDeadline {
		return nil, fmt.Errorf("leader: lease duration %s must be greater than renew deadline %s", cfg.LeaseDuration, cfg.RenewDeadline)
	}
	if minRenew := time.Second + time.Duration(leaderelection.JitterFactor*float64(cfg.RetryPeriod)); cfg.RenewDeadline <= minRenew {
		// The fence moves only with renewals other candidates can see, and
		// they see renew times in whole seconds (see trackingLock.record).
		return nil, fmt.Errorf("leader: renew deadline %s must be longer than 1s + %.1f x retry period %s (%s): other candidates see renewals at whole-second resolution",
			cfg.RenewDeadline, leaderelection.JitterFactor, cfg.RetryPeriod, minRenew)
	}
	if float64(cfg.RenewDeadline) <= leaderelection.JitterFactor*float64(cfg.RetryPeriod) {
		return nil, fmt.Errorf("leader: renew deadline %s must be greater than %.1f x retry period %s", cfg.RenewDeadline, leaderelection.JitterFactor, cfg.RetryPeriod)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	lock := &trackingLock{LeaseLock: &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: cfg.Namespace, Name: cfg.Name},
		Client:     cfg.Client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: cfg.Identity, EventRecorder: cfg.EventRecorder},
	}}
	e := &Elector{cfg: cfg, lock: lock, log: cfg.Logger.With("lease", cfg.Namespace+"/"+cfg.Name, "identity", cfg.Identity)}
	cfg.Metrics.Track(cfg.Name, e.Active)
	return e, nil
}

// Identity is the holder identity this elector campaigns with.
func (e *Elector) Identity() string { return e.cfg.Identity }

// Active reports whether a term's work is running and the lease was renewed
// within the renew deadline. It is what the Fence checks before each write.
func (e *Elector) Active() bool {
	e.mu.Lock()
	active := e.active
	e.mu.Unlock()
	return active && e.lock.renewedWithin(e.cfg.RenewDeadline)
}

// Run campaigns until ctx ends. Each time it wins the lease it calls work with
// a context that is cancelled when the lease cannot be renewed (or ctx ends),
// and waits for work to return before it campaigns again. When ctx ends
// during a term, the lease is released after work has returned, so the next
// master takes over at its next retry instead of after the lease expires.
func (e *Elector) Run(ctx context.Context, work func(ctx context.Context)) {
	for ctx.Err() == nil {
		e.term(ctx, work)
	}
}

// term is one campaign: acquire, work while renewing, stop.
func (e *Elector) term(ctx context.Context, work func(ctx context.Context)) {
	var (
		started    time.Time // written by the work goroutine, read after workDone
		workDone   = make(chan struct{})
		endedEarly bool // work returned while its lease was still held
	)
	e.lock.resetTerm()
	// runCtx also ends when the work gives up on its own, so that the lease
	// is not renewed for a component that no longer works.
	runCtx, cancelRun := context.WithCancel(ctx)
	defer cancelRun()
	le, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:          e.lock,
		LeaseDuration: e.cfg.LeaseDuration,
		RenewDeadline: e.cfg.RenewDeadline,
		RetryPeriod:   e.cfg.RetryPeriod,
		Name:          e.cfg.Name,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(wctx context.Context) {
				defer close(workDone)
				started = time.Now()
				e.setActive(true)
				e.log.Info("leadership acquired; component active", "at", started.UTC().Format(time.RFC3339Nano))
				e.cfg.Metrics.started(e.cfg.Name)
				work(wctx)
				if wctx.Err() == nil {
					endedEarly = true
					cancelRun()
				}
			},
			OnStoppedLeading: func() {},
			OnNewLeader: func(identity string) {
				if identity != e.cfg.Identity {
					e.log.Info("lease held by another master", "holder", identity)
				}
			},
		},
	})
	if err != nil {
		// Only reachable with an invalid config, which New rejects.
		e.log.Error("leader election config", "err", err)
		<-ctx.Done()
		return
	}
	// le.Run returns when the lease is lost or runCtx ends; the work runs in
	// its own goroutine, so wait for it before anything else.
	le.Run(runCtx)
	if !e.lock.becameLeader() {
		return // ctx ended while campaigning: work never started
	}
	<-workDone
	e.setActive(false)
	stopped := time.Now()
	// The component could act (write) until the earlier of its stop and
	// the end of its fence: a paused process stops late but is fenced.
	activeUntil := stopped
	if last := e.lock.lastRenewal(); !last.IsZero() && last.Add(e.cfg.RenewDeadline).Before(activeUntil) {
		fence := last.Add(e.cfg.RenewDeadline)
		activeUntil = fence
	}
	e.log.Info("leadership lost or given up; component stopped", "at", stopped.UTC().Format(time.RFC3339Nano),
		"held", stopped.Sub(started).Round(time.Millisecond), "active_until", activeUntil.UTC().Format(time.RFC3339Nano))
	if ctx.Err() != nil || endedEarly {
		e.release()
	}
	if endedEarly {
		// Let another master try before campaigning again.
		select {
		case <-ctx.Done():
		case <-time.After(e.cfg.LeaseDuration):
		}
	}
}

func (e *Elector) setActive(v bool) {
	e.mu.Lock()
	e.active = v
	e.mu.Unlock()
}

// release gives the lease up after the work has stopped, writing what
// client-go's ReleaseOnCancel writes (no holder, 1s duration).
func (e *Elector) release() {
	ctx, cancel := context.WithTimeout(context.Background(), e.cfg.RenewDeadline)
	defer cancel()
	for ctx.Err() == nil {
		rec, _, err := e.lock.Get(ctx)
		if err != nil || rec.HolderIdentity != e.cfg.Identity {
			if err != nil && !apierrors.IsNotFound(err) {
				e.log.Warn("could not release the lease", "err", err)
			}
			return
		}
		now := metav1.Now()
		err = e.lock.LeaseLock.Update(ctx, resourcelock.LeaderElectionRecord{
			LeaderTransitions: rec.LeaderTransitions, LeaseDurationSeconds: 1, RenewTime: now, AcquireTime: now})
		if err == nil {
			e.log.Info("lease released")
			return
		}
		if !apierrors.IsConflict(err) {
			e.log.Warn("could not release the lease", "err", err)
			return
		}
	}
}

// trackingLock is a LeaseLock that remembers when this identity last wrote
// the lease successfully. The time taken is the moment the write was sent:
// other candidates measure the lease from when they observe it, which is
// later, so the fence errs on the safe side.
type trackingLock struct {
	*resourcelock.LeaseLock

	mu        sync.Mutex
	renewedAt time.Time // monotonic; zero when not holding
	leader    bool      // this term's acquire succeeded (work was started)
	// rawRecord is the last record written, serialized as other
	// candidates compare it (see record).
	rawRecord []byte
}

// RecordEvent is called by client-go synchronously with "became leader" when
// acquire succeeds, just before it starts the work in a goroutine; that is
// how term knows it must wait for the work.
func (l *trackingLock) RecordEvent(s string) {
	if s == "became leader" {
		l.mu.Lock()
		l.leader = true
		l.mu.Unlock()
	}
	l.LeaseLock.RecordEvent(s)
}

func (l *trackingLock) resetTerm() {
	l.mu.Lock()
	l.leader = false
	l.mu.Unlock()
}

func (l *trackingLock) becameLeader() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.leader
}

func (l *trackingLock) Create(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	sent := time.Now()
	err := l.LeaseLock.Create(ctx, ler)
	l.record(sent, ler, err)
	return err
}

func (l *trackingLock) Update(ctx context.Context, ler resourcelock.LeaderElectionRecord) error {
	sent := time.Now()
	err := l.LeaseLock.Update(ctx, ler)
	l.record(sent, ler, err)
	return err
}

func (l *trackingLock) record(sent time.Time, ler resourcelock.LeaderElectionRecord, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case err != nil:
		// Unknown outcome: keep the previous renewal time, which only ages.
	case ler.HolderIdentity == l.Identity():
		// Other candidates restart their lease clock only when the
		// record they read changes, compared as JSON in which the renew
		// time has whole seconds: renewals within one second look alike
		// to them. So only a renewal that changes that JSON moves the
		// fence; counting every renewal let a paused holder's fence run
		// up to a second past a takeover.
		raw, merr := json.Marshal(ler)
		if merr != nil || !bytes.Equal(raw, l.rawRecord) {
			l.renewedAt = sent
			l.rawRecord = raw
		}
	default:
		l.renewedAt = time.Time{}
		l.rawRecord = nil
	}
}

func (l *trackingLock) lastRenewal() time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewedAt
}

func (l *trackingLock) renewedWithin(d time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return !l.renewedAt.IsZero() && time.Since(l.renewedAt) < d
}
