package gossip

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"math/rand/v2"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Pool is this process's membership in the gossip pool. Its methods are
// safe for concurrent use.
type Pool struct {
	cfg     Config
	log     *slog.Logger
	meta    atomic.Pointer[[]byte] // what NodeMeta publishes
	keyring *memberlist.Keyring    // nil: gossip is not encrypted
	ml      atomic.Pointer[memberlist.Memberlist]
	metrics *metrics

	mu sync.Mutex
	// members is this member's view, kept from memberlist's events (which
	// come with memberlist's lock held and consistent data): reading the
	// nodes memberlist.Members returns races with its updates.
	members  map[string]*entry
	joinErr  error // the last failed join attempt's error
	watchers map[chan struct{}]struct{}

	joined   chan struct{} // closed once a join succeeded (or none was asked for)
	joinOnce sync.Once
	stopCh   chan struct{} // closed by stop: the background loop ends
	stopOnce sync.Once
	stopErr  error
	wg       sync.WaitGroup
	done     chan struct{} // closed once everything in the background ended
}

// entry is a member and when it last changed state. Dead and left members
// are kept for DepartedRetention: memberlist forgets dead members after a
// while and never tells a new member about them.
type entry struct {
	Member
	since time.Time
}

// Start creates this member, listening on BindAddr:BindPort, and joins the
// pool through cfg.Join in the background (see Joined). When ctx ends the
// member leaves the pool gracefully and shuts down.
func Start(ctx context.Context, cfg Config) (*Pool, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Pool{
		cfg:      cfg,
		log:      cfg.Logger.With("gossip", cfg.Name),
		members:  make(map[string]*entry),
		watchers: make(map[chan struct{}]struct{}),
		joined:   make(chan struct{}),
		stopCh:   make(chan struct{}),
		done:     make(chan struct{}),
	}
	md, err := encodeMeta(cfg, false)
	if err != nil {
		return nil, err
	}
	p.meta.Store(&md)
	keys, err := cfg.keys()
	if err != nil {
		return nil, err
	}
	mc := memberlist.DefaultLANConfig()
	mc.Name = cfg.Name
	mc.BindAddr = cfg.BindAddr
	mc.BindPort = cfg.BindPort
	mc.AdvertisePort = cfg.BindPort // 0 (random): memberlist advertises the bound port
	mc.AdvertiseAddr = cfg.AdvertiseAddr
	// memberlist refuses a dead member's name from a new address forever
	// by default; a worker that comes back with a new IP (DHCP, a rebuilt
	// VM) should get back in, as consul allows after 30s as well.
	mc.DeadNodeReclaimTime = 30 * time.Second
	mc.Delegate = (*delegate)(p)
	mc.Events = (*events)(p)
	mc.Ping = (*pings)(p)
	mc.Logger = log.New(logWriter{log: p.log, onLine: p.onLog}, "", 0)
	if len(keys) > 0 {
		if p.keyring, err = memberlist.NewKeyring(keys, keys[0]); err != nil {
			return nil, fmt.Errorf("gossip: keyring: %w", err)
		}
		mc.Keyring = p.keyring
	}
	if cfg.Tune != nil {
		cfg.Tune(mc)
	}
	ml, err := memberlist.Create(mc)
	if err != nil {
		return nil, fmt.Errorf("gossip: listen on %s: %w", net.JoinHostPort(cfg.BindAddr, strconv.Itoa(cfg.BindPort)), err)
	}
	p.ml.Store(ml)
	if cfg.Registerer != nil {
		if p.metrics, err = registerMetrics(cfg.Registerer, p); err != nil {
			ml.Shutdown()
			return nil, err
		}
	}
	local := ml.LocalNode()
	p.log.Info("gossip member started", "addr", local.Address(), "role", cfg.Role, "encrypted", p.keyring != nil,
		"join", cfg.Join)
	if len(cfg.Join) == 0 {
		p.markJoined()
	}
	p.wg.Add(1)
	go p.run(ctx)
	go func() {
		p.wg.Wait()
		close(p.done)
	}()
	return p, nil
}

// LocalAddr is this member's advertised gossip HOST:PORT (what others
// join through).
func (p *Pool) LocalAddr() string { return p.ml.Load().LocalNode().Address() }

// Name is this member's name.
func (p *Pool) Name() string { return p.cfg.Name }

// Joined is closed once this member has joined the pool through one of
// Config.Join (at once when Join is empty).
func (p *Pool) Joined() <-chan struct{} { return p.joined }

// Done is closed once the member has shut down and its background work
// has ended.
func (p *Pool) Done() <-chan struct{} { return p.done }

// JoinError is the error of the last join attempt, nil if it succeeded
// (or none was made yet).
func (p *Pool) JoinError() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.joinErr
}

func (p *Pool) markJoined() { p.joinOnce.Do(func() { close(p.joined) }) }

// run joins (retrying with backoff), rejoins when cut off from everyone,
// forgets old departed members, and leaves when ctx ends.
func (p *Pool) run(ctx context.Context) {
	defer p.wg.Done()
	backoff := p.cfg.JoinBackoffMin
	var joining chan error // non-nil while a join attempt runs
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			if err := p.Leave(p.cfg.LeaveTimeout); err != nil {
				p.log.Warn("gossip leave", "err", err)
			}
			return
		case <-p.stopCh:
			return
		case err := <-joining:
			joining = nil
			select {
			case <-p.joined:
				if err != nil {
					p.log.Debug("gossip rejoin failed", "err", err)
				}
				timer.Reset(p.cfg.RejoinInterval)
			default:
				if err == nil {
					p.markJoined()
					timer.Reset(p.cfg.RejoinInterval)
					continue
				}
				p.log.Warn("gossip join failed, retrying", "join", p.cfg.Join, "in", backoff, "err", err)
				// Jitter keeps members started together from retrying in step.
				timer.Reset(backoff/2 + rand.N(backoff/2+1))
				backoff = min(2*backoff, p.cfg.JoinBackoffMax)
			}
		case <-timer.C:
			p.reapDeparted()
			select {
			case <-p.joined:
				// A member that sees no one else may have been cut off (or
				// everyone else restarted): try the seeds and the members
				// that died, as serf's reconnect does.
				if addrs := p.rejoinAddrs(); len(addrs) > 0 && p.ml.Load().NumMembers() <= 1 {
					joining = p.joinAsync(addrs)
					continue
				}
				timer.Reset(p.cfg.RejoinInterval)
			default:
				joining = p.joinAsync(p.cfg.Join)
			}
		}
	}
}

// joinAsync runs one join attempt in the background: memberlist's Join
// blocks up to its TCP timeout per address, which must not hold up a stop.
func (p *Pool) joinAsync(addrs []string) chan error {
	ch := make(chan error, 1)
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		n, err := p.ml.Load().Join(addrs)
		err = flatten(err)
		if err == nil && n == 0 {
			err = errors.New("no member answered")
		}
		if err == nil {
			p.log.Info("gossip joined", "via", n, "members", p.ml.Load().NumMembers())
		}
		p.mu.Lock()
		p.joinErr = err
		p.mu.Unlock()
		ch <- err
	}()
	return ch
}

func (p *Pool) rejoinAddrs() []string {
	addrs := slices.Clone(p.cfg.Join)
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.members {
		if e.State == StateDead {
			addrs = append(addrs, e.Address())
		}
	}
	return addrs
}

func (p *Pool) reapDeparted() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for name, e := range p.members {
		if departed(e.State) && time.Since(e.since) > p.cfg.DepartedRetention {
			delete(p.members, name)
		}
	}
}

func departed(s State) bool { return s == StateDead || s == StateLeft }

// Leave tells the pool this member is leaving (others see it as "left",
// not failed), waiting up to timeout for the broadcast, and shuts it down.
func (p *Pool) Leave(timeout time.Duration) error {
	return p.stop(true, timeout)
}

// Shutdown stops this member without leaving: the others detect it as
// failed, as if the process had crashed.
func (p *Pool) Shutdown() error {
	return p.stop(false, 0)
}

func (p *Pool) stop(leave bool, timeout time.Duration) error {
	p.stopOnce.Do(func() {
		ml := p.ml.Load()
		if leave {
			// Say goodbye in the metadata first, so that the others tell
			// the leave from a failure (see meta.Leaving).
			if md, err := encodeMeta(p.cfg, true); err == nil {
				p.meta.Store(&md)
				if err := ml.UpdateNode(timeout / 2); err != nil {
					p.log.Debug("gossip: leaving update not confirmed", "err", err)
				}
			}
			if err := ml.Leave(timeout); err != nil {
				p.stopErr = fmt.Errorf("gossip: leave: %w", err)
			}
		}
		if err := ml.Shutdown(); err != nil && p.stopErr == nil {
			p.stopErr = fmt.Errorf("gossip: shutdown: %w", err)
		}
		close(p.stopCh)
		if p.metrics != nil {
			p.metrics.unregister()
		}
		p.log.Info("gossip member stopped", "left", leave)
	})
	return p.stopErr
}

// Members is the pool as this member sees it, sorted by name: the alive
// members memberlist knows, and the dead and left ones of the last
// DepartedRetention. CLI members are not listed.
//
// A member is suspect when this member's own probe of it went unanswered
// and it has neither answered a later probe nor been declared dead.
// memberlist v0.5 keeps node states private, so suspicions gossiped by
// other members are not seen: with few members a failure mostly goes
// alive -> dead here.
func (p *Pool) Members() []Member {
	p.mu.Lock()
	out := make([]Member, 0, len(p.members))
	for _, e := range p.members {
		if e.Role != RoleCLI {
			out = append(out, e.Member)
		}
	}
	p.mu.Unlock()
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// APIServers returns the apiserver URLs of the masters not known to be
// dead or gone, sorted. Suspect masters stay in the list: suspicion is one
// missed probe, and the balancer health-checks every server itself, so
// dropping them would only cut working connections.
func (p *Pool) APIServers() []string {
	var urls []string
	for _, m := range p.Members() {
		if m.Role == RoleMaster && m.APIServerURL != "" && (m.State == StateAlive || m.State == StateSuspect) &&
			!slices.Contains(urls, m.APIServerURL) {
			urls = append(urls, m.APIServerURL)
		}
	}
	slices.Sort(urls)
	return urls
}

// Watch returns a channel that receives a value after membership changes
// (joins, leaves, failures, metadata updates); changes that come while a
// value is pending are merged into it, so re-read Members or APIServers on
// each receive. Suspicion alone does not notify. The channel is closed
// when ctx ends or the member stops.
func (p *Pool) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	p.mu.Lock()
	p.watchers[ch] = struct{}{}
	p.mu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
		case <-p.stopCh:
		}
		p.mu.Lock()
		delete(p.watchers, ch)
		p.mu.Unlock()
		close(ch)
	}()
	return ch
}

// notify signals every watcher; the caller holds p.mu.
func (p *Pool) notifyLocked() {
	for ch := range p.watchers {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// InstallKey adds a key to this member's keyring: it decrypts with it from
// now on, but still encrypts with the primary key. Step 1 of a rotation
// (see the package doc).
func (p *Pool) InstallKey(key []byte) error {
	if p.keyring == nil {
		return errors.New("gossip: encryption is off; it can only be turned on at start")
	}
	if err := p.keyring.AddKey(key); err != nil {
		return fmt.Errorf("gossip: install key: %w", err)
	}
	return nil
}

// UseKey makes an installed key the primary one, which encrypts. Step 2.
func (p *Pool) UseKey(key []byte) error {
	if p.keyring == nil {
		return errors.New("gossip: encryption is off")
	}
	if err := p.keyring.UseKey(key); err != nil {
		return fmt.Errorf("gossip: use key: %w", err)
	}
	return nil
}

// RemoveKey drops a key that is not the primary one. Step 3.
func (p *Pool) RemoveKey(key []byte) error {
	if p.keyring == nil {
		return errors.New("gossip: encryption is off")
	}
	if err := p.keyring.RemoveKey(key); err != nil {
		return fmt.Errorf("gossip: remove key: %w", err)
	}
	return nil
}

// Keys returns the keyring, primary key first (nil without encryption).
func (p *Pool) Keys() [][]byte {
	if p.keyring == nil {
		return nil
	}
	primary := p.keyring.GetPrimaryKey()
	keys := [][]byte{primary}
	for _, k := range p.keyring.GetKeys() {
		if string(k) != string(primary) {
			keys = append(keys, k)
		}
	}
	return keys
}

// events receives memberlist's membership events. memberlist calls it with
// its node lock held, so it must not call back into memberlist.
type events Pool

func (e *events) NotifyJoin(n *memberlist.Node) {
	p := (*Pool)(e)
	m, _ := memberOf(n, StateAlive)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.members[m.Name] = &entry{Member: m, since: time.Now()}
	if m.Role != RoleCLI && m.Name != p.cfg.Name {
		p.log.Info("gossip member joined", "member", m.Name, "addr", m.Address(), "role", m.Role)
	}
	p.notifyLocked()
}

func (e *events) NotifyLeave(n *memberlist.Node) {
	p := (*Pool)(e)
	m, leaving := memberOf(n, StateDead)
	if leaving {
		m.State = StateLeft
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if m.Role == RoleCLI {
		// Viewers come and go by design: nothing to remember.
		delete(p.members, m.Name)
	} else {
		p.members[m.Name] = &entry{Member: m, since: time.Now()}
	}
	if m.Role != RoleCLI && m.Name != p.cfg.Name {
		p.log.Info("gossip member gone", "member", m.Name, "addr", m.Address(), "role", m.Role, "state", m.State)
	}
	p.notifyLocked()
}

func (e *events) NotifyUpdate(n *memberlist.Node) {
	p := (*Pool)(e)
	m, _ := memberOf(n, StateAlive)
	p.mu.Lock()
	defer p.mu.Unlock()
	p.members[m.Name] = &entry{Member: m, since: time.Now()}
	p.notifyLocked()
}

// pings clears suspicion when a suspect member answers a probe again.
type pings Pool

func (*pings) AckPayload() []byte { return nil }

func (g *pings) NotifyPingComplete(other *memberlist.Node, _ time.Duration, _ []byte) {
	p := (*Pool)(g)
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.members[other.Name]; e != nil && e.State == StateSuspect {
		e.State, e.since = StateAlive, time.Now()
		p.notifyLocked()
	}
}

// onLog picks this member's own suspicions out of memberlist's log: it is
// the only place memberlist v0.5 reports them. If the wording changes,
// members simply never show as suspect.
func (p *Pool) onLog(line string) {
	rest, ok := strings.CutPrefix(line, "Suspect ")
	if !ok {
		return
	}
	name, ok := strings.CutSuffix(rest, " has failed, no acks received")
	if !ok {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if e := p.members[name]; e != nil && e.State == StateAlive {
		e.State, e.since = StateSuspect, time.Now()
		p.notifyLocked()
	}
}

// delegate publishes this member's metadata, and on joins exchanges the
// departed members so that a new member (`synod members` too) sees who
// died or left before it came.
type delegate Pool

// wireDeparted is a departed member in the join state exchange.
type wireDeparted struct {
	Member
	Since int64 `json:"since"` // unix seconds
}

func (d *delegate) NodeMeta(limit int) []byte       { return *(*Pool)(d).meta.Load() }
func (d *delegate) NotifyMsg([]byte)                {}
func (d *delegate) GetBroadcasts(int, int) [][]byte { return nil }

func (d *delegate) LocalState(join bool) []byte {
	if !join {
		return nil
	}
	p := (*Pool)(d)
	p.mu.Lock()
	var list []wireDeparted
	for _, e := range p.members {
		if departed(e.State) {
			list = append(list, wireDeparted{Member: e.Member, Since: e.since.Unix()})
		}
	}
	p.mu.Unlock()
	b, err := json.Marshal(list)
	if err != nil {
		return nil
	}
	return b
}

func (d *delegate) MergeRemoteState(buf []byte, join bool) {
	p := (*Pool)(d)
	if !join || len(buf) == 0 {
		return
	}
	var list []wireDeparted
	if err := json.Unmarshal(buf, &list); err != nil {
		p.log.Debug("gossip: ignoring undecodable remote state", "err", err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	added := false
	for _, w := range list {
		// memberlist has merged the remote's member list by now: a member
		// we know in any state is not overridden by the remote's memory.
		since := time.Unix(w.Since, 0)
		if _, known := p.members[w.Name]; known || w.Name == p.cfg.Name || w.Role == RoleCLI ||
			!departed(w.State) || time.Since(since) > p.cfg.DepartedRetention {
			continue
		}
		p.members[w.Name] = &entry{Member: w.Member, since: since}
		added = true
	}
	if added {
		p.notifyLocked()
	}
}

// flatten turns memberlist's multierror (one line per address, bulleted)
// into one line.
func flatten(err error) error {
	var multi interface{ WrappedErrors() []error }
	if !errors.As(err, &multi) {
		return err
	}
	var msgs []string
	for _, e := range multi.WrappedErrors() {
		msgs = append(msgs, e.Error())
	}
	return errors.New(strings.Join(msgs, "; "))
}
