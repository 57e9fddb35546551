package proxy

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	v1 "k8s.io/api/core/v1"
	discovery "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/selection"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"

	"synod/node/iptbackend"
)

// Labels kube-proxy's informers exclude: objects of another proxy
// implementation, and headless services' endpoints.
const (
	labelServiceProxyName = "service.kubernetes.io/service-proxy-name"
	labelHeadless         = v1.IsHeadlessService
)

// Config configures a Proxier.
type Config struct {
	Client   kubernetes.Interface
	NodeName string // decides which endpoints are local (externalTrafficPolicy Local)
	// NodeIPs are this node's addresses, for logs. NodePorts answer on
	// every local address (kube-proxy's default --nodeport-addresses).
	NodeIPs []net.IP
	// ClusterCIDR is the pod network (e.g. 10.244.0.0/16). Traffic to a
	// cluster IP from outside it is masqueraded; empty disables that.
	ClusterCIDR string
	// IPTables runs the iptables tools; nil means NewAutoRunner in the
	// process's own network namespace (the backend detected).
	IPTables   Runner
	Logger     *slog.Logger          // nil discards
	Registerer prometheus.Registerer // nil registers nothing

	// MinSyncPeriod is the least time between two syncs: changes that
	// arrive within it are applied together (default 100ms).
	MinSyncPeriod time.Duration
	// SyncPeriod is how often a sync runs even with no change; it also
	// checks the jumps from the built-in chains (default 30s).
	SyncPeriod time.Duration
	// FullSyncPeriod is how often every chain is rewritten, repairing
	// chains changed behind the proxier's back (default 1h). Other syncs
	// write only the top-level chains and the chains that changed: with
	// iptables-nft 1.8.9 a restore costs O(chains × rules) in the chains
	// it names, so a full sync of 1,000 services × 10 endpoints takes
	// seconds while a partial one takes a fraction of a second.
	FullSyncPeriod time.Duration
}

// Proxier programs Services into iptables. Create it with New and start it
// with Run.
type Proxier struct {
	cfg      Config
	runner   Runner
	log      *slog.Logger
	metrics  *metrics
	factory  informers.SharedInformerFactory
	services cache.Indexer
	slices   cache.Indexer
	synced   []cache.InformerSynced
	trigger  chan struct{}

	// applied is what the last successful restore programmed; nil forces
	// the next sync to write everything. Only the sync loop touches it.
	applied *ruleSet
}

const indexByService = "service"

// New creates a Proxier. It starts nothing: Run does.
func New(cfg Config) (*Proxier, error) {
	if cfg.Client == nil {
		return nil, errors.New("proxy: no Kubernetes client")
	}
	if cfg.ClusterCIDR != "" {
		pfx, err := netip.ParsePrefix(cfg.ClusterCIDR)
		if err != nil || !pfx.Addr().Is4() {
			return nil, fmt.Errorf("proxy: cluster CIDR %q is not an IPv4 prefix", cfg.ClusterCIDR)
		}
		cfg.ClusterCIDR = pfx.Masked().String()
	}
	if cfg.MinSyncPeriod <= 0 {
		cfg.MinSyncPeriod = 100 * time.Millisecond
	}
	if cfg.SyncPeriod <= 0 {
		cfg.SyncPeriod = 30 * time.Second
	}
	if cfg.FullSyncPeriod <= 0 {
		cfg.FullSyncPeriod = time.Hour
	}
	p := &Proxier{cfg: cfg, runner: cfg.IPTables, log: cfg.Logger, trigger: make(chan struct{}, 1)}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	if p.runner == nil {
		r, reason, err := NewAutoRunner(context.Background(), "", iptbackend.Auto)
		if err != nil {
			return nil, fmt.Errorf("proxy: %w", err)
		}
		p.log.Info("iptables backend", "backend", r.Tools().Backend, "why", reason)
		p.runner = r
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("proxy: register metrics: %w", err)
	}
	p.metrics = m

	noProxyName, err := labels.NewRequirement(labelServiceProxyName, selection.DoesNotExist, nil)
	if err != nil {
		return nil, fmt.Errorf("proxy: selector: %w", err)
	}
	noHeadless, err := labels.NewRequirement(labelHeadless, selection.DoesNotExist, nil)
	if err != nil {
		return nil, fmt.Errorf("proxy: selector: %w", err)
	}
	selector := labels.NewSelector().Add(*noProxyName, *noHeadless).String()
	p.factory = informers.NewSharedInformerFactoryWithOptions(cfg.Client, 0,
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector }))

	handler := cache.ResourceEventHandlerFuncs{
		AddFunc:    func(any) { p.kick() },
		UpdateFunc: func(any, any) { p.kick() },
		DeleteFunc: func(any) { p.kick() },
	}
	svcInf := p.factory.Core().V1().Services().Informer()
	sliceInf := p.factory.Discovery().V1().EndpointSlices().Informer()
	if err := sliceInf.AddIndexers(cache.Indexers{indexByService: func(obj any) ([]string, error) {
		s, ok := obj.(*discovery.EndpointSlice)
		if !ok || s.Labels[discovery.LabelServiceName] == "" {
			return nil, nil
		}
		return []string{s.Namespace + "/" + s.Labels[discovery.LabelServiceName]}, nil
	}}); err != nil {
		return nil, fmt.Errorf("proxy: index endpointslices: %w", err)
	}
	for _, inf := range []cache.SharedIndexInformer{svcInf, sliceInf} {
		if _, err := inf.AddEventHandler(handler); err != nil {
			return nil, fmt.Errorf("proxy: watch: %w", err)
		}
		p.synced = append(p.synced, inf.HasSynced)
	}
	p.services, p.slices = svcInf.GetIndexer(), sliceInf.GetIndexer()
	return p, nil
}

// kick asks the sync loop for a sync; kicks before it starts one coalesce.
func (p *Proxier) kick() {
	select {
	case p.trigger <- struct{}{}:
	default:
	}
}

// Run watches the API and keeps iptables in step until ctx ends. The first
// sync waits for the informers' initial lists, so a restarting proxier
// never programs a partial view. The rules stay in place when Run returns
// (connections keep working while a worker restarts); Cleanup removes
// them.
func (p *Proxier) Run(ctx context.Context) error {
	p.factory.Start(ctx.Done())
	defer p.factory.Shutdown()
	if !cache.WaitForCacheSync(ctx.Done(), p.synced...) {
		return nil // ctx ended
	}
	p.log.Info("proxy: caches synced, programming iptables", "node", p.cfg.NodeName, "nodeIPs", p.cfg.NodeIPs,
		"clusterCIDR", p.cfg.ClusterCIDR)

	periodic := time.NewTicker(p.cfg.SyncPeriod)
	defer periodic.Stop()
	periodicFull := time.NewTicker(p.cfg.FullSyncPeriod)
	defer periodicFull.Stop()
	retry := time.NewTimer(time.Hour)
	retry.Stop()
	defer retry.Stop()
	const minBackoff, maxBackoff = 500 * time.Millisecond, 30 * time.Second
	backoff := minBackoff
	full, checkJumps := true, true
	var last time.Time
	for first := true; ; first = false {
		if !first {
			select {
			case <-ctx.Done():
				return nil
			case <-p.trigger:
			case <-periodic.C:
				checkJumps = true
			case <-periodicFull.C:
				full = true
			case <-retry.C:
			}
		}
		if wait := p.cfg.MinSyncPeriod - time.Since(last); wait > 0 {
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(wait):
			}
		}
		// Changes that arrived so far are all read by this sync.
		select {
		case <-p.trigger:
		default:
		}
		last = time.Now()
		if err := p.sync(ctx, full, checkJumps); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			p.metrics.syncErrors.Inc()
			p.log.Error("proxy: sync failed; retrying with a full sync", "err", err, "retryIn", backoff)
			full = true
			retry.Reset(backoff)
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		full, checkJumps, backoff = false, false, minBackoff
	}
}

// sync programs the current state with one iptables-restore. A full sync
// rewrites every chain and looks for leftover chains (from before a
// restart) with iptables-save; it and checkJumps also make sure of the
// jumps from the built-in chains.
func (p *Proxier) sync(ctx context.Context, full, checkJumps bool) error {
	start := time.Now()
	rs := generate(p.currentPorts(), p.cfg.ClusterCIDR)

	applied := p.applied
	full = full || applied == nil
	if full || checkJumps {
		if err := ensureJumps(p.runner); err != nil {
			return err
		}
	}
	var stale []string
	if full {
		applied = nil
		out, err := p.runner.Save(ctx, "nat")
		if err != nil {
			return err
		}
		for _, c := range savedChains(out) {
			if _, want := rs.nat.rules[c]; !want && isPerServiceChain(c) {
				stale = append(stale, c)
			}
		}
	} else {
		for _, c := range applied.nat.order {
			if _, want := rs.nat.rules[c]; !want && isPerServiceChain(c) {
				stale = append(stale, c)
			}
		}
	}
	slices.Sort(stale)

	p.applied = nil // unknown until the restore succeeds
	p.metrics.restoreWrites.Inc()
	if err := p.runner.Restore(ctx, restoreData(rs, applied, stale)); err != nil {
		return err
	}
	p.applied = rs

	took := time.Since(start)
	p.metrics.syncDuration.Observe(took.Seconds())
	p.metrics.lastSync.SetToCurrentTime()
	p.metrics.rules.WithLabelValues("filter").Set(float64(rs.filter.ruleCount()))
	p.metrics.rules.WithLabelValues("nat").Set(float64(rs.nat.ruleCount()))
	p.log.Debug("proxy: synced", "full", full, "took", took, "natRules", rs.nat.ruleCount(), "deletedChains", len(stale))
	return nil
}

// currentPorts reads the informer caches into the ports to program,
// sorted so that the generated rules are stable.
func (p *Proxier) currentPorts() []servicePort {
	var ports []servicePort
	for _, obj := range p.services.List() {
		svc, ok := obj.(*v1.Service)
		if !ok {
			continue
		}
		objs, _ := p.slices.ByIndex(indexByService, svc.Namespace+"/"+svc.Name)
		eps := make([]*discovery.EndpointSlice, 0, len(objs))
		for _, o := range objs {
			if s, ok := o.(*discovery.EndpointSlice); ok {
				eps = append(eps, s)
			}
		}
		ports = append(ports, servicePorts(svc, eps, p.cfg.NodeName)...)
	}
	slices.SortFunc(ports, func(a, b servicePort) int {
		return cmp.Or(cmp.Compare(a.name, b.name), cmp.Compare(a.protocol, b.protocol))
	})
	return ports
}

// jump is a rule in a built-in chain that leads to one of ours.
type jump struct {
	table, chain, target string
	rule                 []string
}

// jumps are kube-proxy's: service traffic is matched in the nat table
// before routing (PREROUTING, OUTPUT), masqueraded on the way out
// (POSTROUTING), and refused or allowed in the filter table.
var jumps = []jump{
	{"filter", "INPUT", chainExternalServices, []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "kubernetes externally-visible service portals"}},
	{"filter", "FORWARD", chainExternalServices, []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "kubernetes externally-visible service portals"}},
	{"filter", "FORWARD", chainServices, []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "kubernetes service portals"}},
	{"filter", "OUTPUT", chainServices, []string{"-m", "conntrack", "--ctstate", "NEW", "-m", "comment", "--comment", "kubernetes service portals"}},
	{"filter", "FORWARD", chainForward, []string{"-m", "comment", "--comment", "kubernetes forwarding rules"}},
	{"nat", "PREROUTING", chainServices, []string{"-m", "comment", "--comment", "kubernetes service portals"}},
	{"nat", "OUTPUT", chainServices, []string{"-m", "comment", "--comment", "kubernetes service portals"}},
	{"nat", "POSTROUTING", chainPostrouting, []string{"-m", "comment", "--comment", "kubernetes postrouting rules"}},
}

// ensureJumps creates the chains the jumps lead to and the jumps.
func ensureJumps(r Runner) error {
	for _, j := range jumps {
		if err := r.EnsureChain(j.table, j.target); err != nil {
			return err
		}
		if err := r.EnsureRule(j.table, j.chain, append(slices.Clone(j.rule), "-j", j.target)...); err != nil {
			return err
		}
	}
	return nil
}

// savedChains lists the chains declared in iptables-save output.
func savedChains(save []byte) []string {
	var chains []string
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if name, ok := strings.CutPrefix(line, ":"); ok {
			if i := strings.IndexByte(name, ' '); i > 0 {
				name = name[:i]
			}
			chains = append(chains, name)
		}
	}
	return chains
}

// Cleanup removes the proxier's rules through its runner (see Cleanup).
func (p *Proxier) Cleanup(ctx context.Context) error {
	return Cleanup(ctx, p.runner)
}

// Cleanup removes every KUBE-* chain from the filter and nat tables and
// every rule elsewhere that jumps to one, in one iptables-restore (none if
// there is nothing to remove). Other rules stay. It needs no API access:
// `synod worker --cleanup` runs it without a cluster. Run it only while no
// Proxier runs on the same namespace.
func Cleanup(ctx context.Context, r Runner) error {
	var b strings.Builder
	for _, t := range []string{"filter", "nat"} {
		save, err := r.Save(ctx, t)
		if err != nil {
			return fmt.Errorf("proxy cleanup: %w", err)
		}
		var ours, refs []string
		for _, c := range savedChains(save) {
			if strings.HasPrefix(c, "KUBE-") {
				ours = append(ours, c)
			}
		}
		sc := bufio.NewScanner(bytes.NewReader(save))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			line := sc.Text()
			f := strings.Fields(line)
			if len(f) < 2 || f[0] != "-A" || strings.HasPrefix(f[1], "KUBE-") {
				continue // rules inside our chains go with them
			}
			if strings.Contains(line, " -j KUBE-") || strings.Contains(line, " -g KUBE-") {
				refs = append(refs, "-D"+strings.TrimPrefix(line, "-A"))
			}
		}
		if len(ours) == 0 && len(refs) == 0 {
			continue
		}
		fmt.Fprintf(&b, "*%s\n", t)
		for _, c := range ours {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, l := range refs {
			b.WriteString(l)
			b.WriteByte('\n')
		}
		for _, c := range ours {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
	}
	if b.Len() == 0 {
		return nil
	}
	if err := r.Restore(ctx, []byte(b.String())); err != nil {
		return fmt.Errorf("proxy cleanup: %w", err)
	}
	return nil
}
