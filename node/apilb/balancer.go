package apilb

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultListenAddr is where the balancer listens by default (k3s's agent
// uses the same port).
const DefaultListenAddr = "127.0.0.1:6444"

// Source supplies apiserver URLs dynamically; *gossip.Pool is one.
type Source interface {
	// APIServers returns the current apiserver URLs.
	APIServers() []string
	// Watch signals changes; the balancer also polls, so a Source that
	// never signals works too.
	Watch(ctx context.Context) <-chan struct{}
}

// Config configures a Balancer.
type Config struct {
	// ListenAddr is the local address to serve on (default
	// DefaultListenAddr; "127.0.0.1:0" for any free port).
	ListenAddr string
	// Servers are static apiserver URLs (https://HOST:PORT) or HOST:PORT,
	// always balanced over, whatever Source says.
	Servers []string
	// Source, if set, adds the servers it announces (gossip).
	Source Source

	// HealthInterval is the time between two checks of one server
	// (default 1s); HealthTimeout bounds one check (default 1s) and
	// DialTimeout one dial to a server (default 1s).
	HealthInterval, HealthTimeout, DialTimeout time.Duration
	// HealthTLS is the TLS configuration of the health checks. nil skips
	// certificate verification: a check sends no credentials and only
	// reads "ok", and the clients verify the servers end to end anyway.
	HealthTLS *tls.Config

	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: no metrics
}

func (c Config) withDefaults() (Config, error) {
	if c.ListenAddr == "" {
		c.ListenAddr = DefaultListenAddr
	}
	if c.HealthInterval == 0 {
		c.HealthInterval = time.Second
	}
	if c.HealthTimeout == 0 {
		c.HealthTimeout = time.Second
	}
	if c.DialTimeout == 0 {
		c.DialTimeout = time.Second
	}
	if c.HealthInterval < 0 || c.HealthTimeout < 0 || c.DialTimeout < 0 {
		return c, errors.New("apilb: negative interval or timeout")
	}
	if len(c.Servers) == 0 && c.Source == nil {
		return c, errors.New("apilb: no servers and no source")
	}
	for _, s := range c.Servers {
		if _, err := hostPort(s); err != nil {
			return c, err
		}
	}
	if c.HealthTLS == nil {
		c.HealthTLS = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // see HealthTLS
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// hostPort turns an apiserver URL or HOST:PORT into HOST:PORT.
func hostPort(s string) (string, error) {
	if u, err := url.Parse(s); err == nil && u.Scheme != "" && u.Host != "" {
		if u.Scheme != "https" {
			return "", fmt.Errorf("apilb: server %q: want an https URL or HOST:PORT", s)
		}
		if u.Port() == "" {
			return net.JoinHostPort(u.Hostname(), "443"), nil
		}
		return u.Host, nil
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		return "", fmt.Errorf("apilb: server %q: want an https URL or HOST:PORT: %w", s, err)
	}
	return s, nil
}

// Balancer is a running load balancer. Its methods are safe for
// concurrent use.
type Balancer struct {
	cfg     Config
	log     *slog.Logger
	ln      net.Listener
	health  *http.Client
	metrics *metrics
	ctx     context.Context // the Start context: ends everything

	mu      sync.Mutex
	servers map[string]*server // by HOST:PORT
	order   []string           // sorted keys of servers, for round-robin
	next    int                // round-robin position in order
	static  map[string]bool
	dynamic map[string]bool

	wg   sync.WaitGroup
	done chan struct{}
}

// server is one apiserver and the connections proxied to it.
type server struct {
	addr    string
	healthy bool // optimistic until the first check: a new server is tried
	checked bool
	lastErr string
	total   uint64
	conns   map[net.Conn]struct{} // both ends of every proxied connection
	stop    context.CancelFunc    // ends its health checker
}

// ServerStatus is one server as the balancer sees it.
type ServerStatus struct {
	Address     string // HOST:PORT
	Healthy     bool
	Checked     bool // at least one health check finished
	LastError   string
	Static      bool // from Config.Servers
	Active      int  // proxied connections open now
	Connections uint64
}

// Start listens on cfg.ListenAddr and balances until ctx ends; then it
// closes the listener and every proxied connection (see Done).
func Start(ctx context.Context, cfg Config) (*Balancer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		return nil, fmt.Errorf("apilb: listen: %w", err)
	}
	b := &Balancer{
		cfg: cfg,
		log: cfg.Logger.With("component", "apilb"),
		ln:  ln,
		health: &http.Client{
			Timeout: cfg.HealthTimeout,
			Transport: &http.Transport{
				TLSClientConfig: cfg.HealthTLS, DisableKeepAlives: true, // every check dials: it tests the TCP path too
				DialContext: (&net.Dialer{Timeout: cfg.HealthTimeout}).DialContext, Proxy: nil,
			},
		},
		ctx:     ctx,
		servers: make(map[string]*server),
		static:  make(map[string]bool),
		dynamic: make(map[string]bool),
		done:    make(chan struct{}),
	}
	if cfg.Registerer != nil {
		if b.metrics, err = newMetrics(cfg.Registerer); err != nil {
			ln.Close()
			return nil, err
		}
	}
	for _, s := range cfg.Servers {
		hp, _ := hostPort(s)
		b.static[hp] = true
	}
	b.mu.Lock()
	b.reconcileLocked()
	b.mu.Unlock()
	b.log.Info("api load balancer listening", "addr", ln.Addr().String(), "servers", cfg.Servers)

	b.wg.Add(2)
	go b.accept()
	go func() {
		defer b.wg.Done()
		<-ctx.Done()
		ln.Close()
		b.mu.Lock()
		for _, s := range b.servers {
			s.stop()
			closeConns(s)
		}
		b.mu.Unlock()
	}()
	if cfg.Source != nil {
		b.wg.Add(1)
		go b.follow(cfg.Source)
	}
	go func() {
		b.wg.Wait()
		if b.metrics != nil {
			b.metrics.unregister()
		}
		close(b.done)
	}()
	return b, nil
}

// Addr is the address the balancer listens on.
func (b *Balancer) Addr() string { return b.ln.Addr().String() }

// URL is the https URL clients use (TLS is end to end with the apiserver).
func (b *Balancer) URL() string { return "https://" + b.Addr() }

// Done is closed once the balancer stopped after its context ended.
func (b *Balancer) Done() <-chan struct{} { return b.done }

// SetServers replaces the dynamic servers (what Config.Source would set).
// An empty list is ignored: see the package doc.
func (b *Balancer) SetServers(urls []string) {
	set := make(map[string]bool, len(urls))
	for _, u := range urls {
		hp, err := hostPort(u)
		if err != nil {
			b.log.Warn("ignoring apiserver", "err", err)
			continue
		}
		set[hp] = true
	}
	if len(set) == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.dynamic = set
	b.reconcileLocked()
}

// Servers reports every server, sorted by address.
func (b *Balancer) Servers() []ServerStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	out := make([]ServerStatus, 0, len(b.order))
	for _, addr := range b.order {
		s := b.servers[addr]
		out = append(out, ServerStatus{Address: addr, Healthy: s.healthy, Checked: s.checked, LastError: s.lastErr,
			Static: b.static[addr], Active: len(s.conns) / 2, Connections: s.total})
	}
	return out
}

// reconcileLocked adds and removes servers to match static ∪ dynamic.
func (b *Balancer) reconcileLocked() {
	if b.ctx.Err() != nil {
		return
	}
	want := map[string]bool{}
	for a := range b.static {
		want[a] = true
	}
	for a := range b.dynamic {
		want[a] = true
	}
	for addr, s := range b.servers {
		if !want[addr] {
			b.log.Info("removing apiserver", "server", addr, "connections", len(s.conns)/2)
			s.stop()
			closeConns(s)
			delete(b.servers, addr)
			if b.metrics != nil {
				b.metrics.forget(addr)
			}
		}
	}
	for addr := range want {
		if _, ok := b.servers[addr]; ok {
			continue
		}
		b.log.Info("adding apiserver", "server", addr)
		ctx, cancel := context.WithCancel(b.ctx)
		s := &server{addr: addr, healthy: true, conns: make(map[net.Conn]struct{}), stop: cancel}
		b.servers[addr] = s
		if b.metrics != nil {
			b.metrics.setHealthy(addr, true)
		}
		b.wg.Add(1)
		go b.check(ctx, s)
	}
	b.order = b.order[:0]
	for addr := range b.servers {
		b.order = append(b.order, addr)
	}
	slices.Sort(b.order)
}

// follow keeps the dynamic servers in step with the source: on every
// change it signals, and every few seconds in case it does not.
func (b *Balancer) follow(src Source) {
	defer b.wg.Done()
	changes := src.Watch(b.ctx)
	tick := time.NewTicker(5 * b.cfg.HealthInterval)
	defer tick.Stop()
	for {
		b.SetServers(src.APIServers())
		select {
		case <-b.ctx.Done():
			return
		case _, ok := <-changes:
			if !ok {
				changes = nil // the source stopped: keep polling its last view
			}
		case <-tick.C:
		}
	}
}

// check health-checks one server until ctx ends.
func (b *Balancer) check(ctx context.Context, s *server) {
	defer b.wg.Done()
	u := "https://" + s.addr + "/readyz"
	for {
		err := b.probe(ctx, u)
		if ctx.Err() != nil {
			return
		}
		b.setHealth(s, err)
		t := time.NewTimer(b.cfg.HealthInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

func (b *Balancer) probe(ctx context.Context, u string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := b.health.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("/readyz: %s: %.200s", resp.Status, body)
	}
	return nil
}

// setHealth records a check or dial result. A server that turns unhealthy
// loses its connections while some other server is healthy; if none is,
// every unhealthy server's connections are closed as soon as one is.
func (b *Balancer) setHealth(s *server, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.servers[s.addr] != s {
		return // removed meanwhile
	}
	healthy := err == nil
	wasHealthy := s.healthy
	s.healthy, s.checked = healthy, true
	s.lastErr = ""
	if err != nil {
		s.lastErr = err.Error()
	}
	if b.metrics != nil {
		b.metrics.setHealthy(s.addr, healthy)
	}
	if healthy != wasHealthy {
		if healthy {
			b.log.Info("apiserver healthy", "server", s.addr)
		} else {
			b.log.Warn("apiserver unhealthy", "server", s.addr, "err", err, "connections", len(s.conns)/2)
		}
	}
	if !b.anyHealthyLocked() {
		return
	}
	for _, o := range b.servers {
		if !o.healthy && len(o.conns) > 0 {
			b.log.Info("closing connections to unhealthy apiserver", "server", o.addr, "connections", len(o.conns)/2)
			closeConns(o)
		}
	}
}

func (b *Balancer) anyHealthyLocked() bool {
	for _, s := range b.servers {
		if s.healthy {
			return true
		}
	}
	return false
}

// candidates lists the servers to try for a new connection: the healthy
// ones round-robin, then the others (a stale check should not leave a
// client with nothing).
func (b *Balancer) candidates() []*server {
	b.mu.Lock()
	defer b.mu.Unlock()
	var healthy, rest []*server
	n := len(b.order)
	for i := range n {
		s := b.servers[b.order[(b.next+i)%n]]
		if s.healthy {
			healthy = append(healthy, s)
		} else {
			rest = append(rest, s)
		}
	}
	if n > 0 {
		b.next = (b.next + 1) % n
	}
	return append(healthy, rest...)
}

func (b *Balancer) accept() {
	defer b.wg.Done()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			if b.ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			b.log.Warn("accept", "err", err)
			select {
			case <-b.ctx.Done():
				return
			case <-time.After(50 * time.Millisecond):
			}
			continue
		}
		b.wg.Add(1)
		go b.serve(c)
	}
}

// serve dials a server for one client connection and copies bytes both
// ways until either side closes.
func (b *Balancer) serve(client net.Conn) {
	defer b.wg.Done()
	var upstream net.Conn
	var target *server
	for _, s := range b.candidates() {
		d := net.Dialer{Timeout: b.cfg.DialTimeout}
		c, err := d.DialContext(b.ctx, "tcp", s.addr)
		if err != nil {
			if b.ctx.Err() != nil {
				break
			}
			if b.metrics != nil {
				b.metrics.dialFailures.WithLabelValues(s.addr).Inc()
			}
			b.log.Debug("dial apiserver", "server", s.addr, "err", err)
			b.setHealth(s, fmt.Errorf("dial: %w", err))
			continue
		}
		if b.track(s, client, c) {
			upstream, target = c, s
			break
		}
		c.Close()
	}
	if upstream == nil {
		client.Close()
		if b.ctx.Err() == nil {
			b.log.Warn("no apiserver reachable for a connection", "client", client.RemoteAddr().String())
		}
		return
	}
	var once sync.Once
	closeBoth := func() {
		once.Do(func() {
			client.Close()
			upstream.Close()
		})
	}
	done := make(chan struct{})
	go func() {
		io.Copy(upstream, client)
		closeBoth()
		close(done)
	}()
	io.Copy(client, upstream)
	closeBoth()
	<-done
	b.untrack(target, client, upstream)
}

// track registers a proxied connection with its server; false if the
// server was removed or the balancer is stopping meanwhile.
func (b *Balancer) track(s *server, client, upstream net.Conn) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.servers[s.addr] != s || b.ctx.Err() != nil {
		return false
	}
	s.conns[client] = struct{}{}
	s.conns[upstream] = struct{}{}
	s.total++
	if b.metrics != nil {
		b.metrics.connections.WithLabelValues(s.addr).Inc()
		b.metrics.active.WithLabelValues(s.addr).Inc()
	}
	return true
}

func (b *Balancer) untrack(s *server, client, upstream net.Conn) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(s.conns, client)
	delete(s.conns, upstream)
	if b.metrics != nil && b.servers[s.addr] == s {
		b.metrics.active.WithLabelValues(s.addr).Dec()
	}
}

// closeConns closes every connection proxied to s; their serve goroutines
// then untrack them.
func closeConns(s *server) {
	for c := range s.conns {
		c.Close()
	}
}
