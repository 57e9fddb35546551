package proxy

import (
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Chains and marks, named as kube-proxy names them.
const (
	chainServices         = "KUBE-SERVICES"
	chainExternalServices = "KUBE-EXTERNAL-SERVICES"
	chainForward          = "KUBE-FORWARD"
	chainNodePorts        = "KUBE-NODEPORTS"
	chainPostrouting      = "KUBE-POSTROUTING"
	chainMarkMasq         = "KUBE-MARK-MASQ"

	prefixSVC = "KUBE-SVC-"
	prefixSVL = "KUBE-SVL-"
	prefixEXT = "KUBE-EXT-"
	prefixSEP = "KUBE-SEP-"

	masqMark = "0x4000"
)

// perServicePrefixes are the chains a sync creates and deletes as services
// come and go; the other KUBE-* chains always exist.
var perServicePrefixes = []string{prefixSVC, prefixSVL, prefixEXT, prefixSEP}

func isPerServiceChain(name string) bool {
	for _, p := range perServicePrefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// hash16 is kube-proxy's chain-name hash: base32 of sha256, 16 chars,
// so that names fit iptables' 28-character limit.
func hash16(s string) string {
	h := sha256.Sum256([]byte(s))
	return base32.StdEncoding.EncodeToString(h[:])[:16]
}

func svcChain(sp *servicePort) string { return prefixSVC + hash16(sp.name+sp.protocol) }
func svlChain(sp *servicePort) string { return prefixSVL + hash16(sp.name+sp.protocol) }
func extChain(sp *servicePort) string { return prefixEXT + hash16(sp.name+sp.protocol) }
func sepChain(sp *servicePort, ep endpoint) string {
	return prefixSEP + hash16(sp.name+sp.protocol+ep.String())
}

// table is the generated content of one iptables table: its chains in
// declaration order and each chain's rules ("-A CHAIN ..." lines).
type table struct {
	name  string
	order []string
	rules map[string][]string
}

func newTable(name string, chains ...string) *table {
	t := &table{name: name, rules: map[string][]string{}}
	for _, c := range chains {
		t.chain(c)
	}
	return t
}

// chain declares c (once) so it is written even if it has no rules.
func (t *table) chain(c string) {
	if _, ok := t.rules[c]; !ok {
		t.rules[c] = nil
		t.order = append(t.order, c)
	}
}

// add appends a rule to chain c, quoting arguments the way iptables-save
// does so that the restore input reads like iptables-save output.
func (t *table) add(c string, args ...string) {
	t.chain(c)
	var b strings.Builder
	b.WriteString("-A ")
	b.WriteString(c)
	for _, a := range args {
		b.WriteByte(' ')
		if strings.ContainsAny(a, " \t") {
			b.WriteString(strconv.Quote(a))
		} else {
			b.WriteString(a)
		}
	}
	t.rules[c] = append(t.rules[c], b.String())
}

func (t *table) ruleCount() int {
	n := 0
	for _, r := range t.rules {
		n += len(r)
	}
	return n
}

// ruleSet is the whole rule set of one sync.
type ruleSet struct {
	filter, nat *table
}

// topLevel are the chains rewritten on every sync (they list every
// service, so nearly any change touches them).
var topLevel = map[string]bool{
	chainServices: true, chainExternalServices: true, chainForward: true,
	chainNodePorts: true, chainPostrouting: true, chainMarkMasq: true,
}

// generate builds the rules for ports (in order; the caller sorts them).
// clusterCIDR, if set, is the pod network: traffic to a cluster IP from
// outside it is masqueraded, as kube-proxy does with --cluster-cidr.
func generate(ports []servicePort, clusterCIDR string) *ruleSet {
	filter := newTable("filter", chainServices, chainExternalServices, chainForward)
	nat := newTable("nat", chainServices, chainNodePorts, chainPostrouting, chainMarkMasq)

	filter.add(chainForward, "-m", "conntrack", "--ctstate", "INVALID", "-j", "DROP")
	filter.add(chainForward, "-m", "comment", "--comment", "kubernetes forwarding rules",
		"-m", "mark", "--mark", masqMark+"/"+masqMark, "-j", "ACCEPT")
	filter.add(chainForward, "-m", "comment", "--comment", "kubernetes forwarding conntrack rule",
		"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")

	// Marked packets are masqueraded once, on their way out; the mark is
	// cleared so a packet re-entering the stack is not masqueraded twice.
	nat.add(chainPostrouting, "-m", "mark", "!", "--mark", masqMark+"/"+masqMark, "-j", "RETURN")
	nat.add(chainPostrouting, "-j", "MARK", "--xor-mark", masqMark)
	nat.add(chainPostrouting, "-m", "comment", "--comment", "kubernetes service traffic requiring SNAT",
		"-j", "MASQUERADE", "--random-fully")
	nat.add(chainMarkMasq, "-j", "MARK", "--or-mark", masqMark)

	for i := range ports {
		sp := &ports[i]
		proto := []string{"-m", sp.protocol, "-p", sp.protocol}
		port := strconv.Itoa(int(sp.port))
		nodePort := strconv.Itoa(int(sp.nodePort))
		if len(sp.endpoints) == 0 {
			// Refuse instead of letting the packet time out against an
			// address nothing answers.
			filter.add(chainServices, join([]string{"-m", "comment", "--comment", sp.name + " has no endpoints"},
				proto, []string{"-d", sp.clusterIP, "--dport", port, "-j", "REJECT"})...)
			if sp.nodePort != 0 {
				filter.add(chainExternalServices, join([]string{"-m", "comment", "--comment", sp.name + " has no endpoints",
					"-m", "addrtype", "--dst-type", "LOCAL"}, proto, []string{"--dport", nodePort, "-j", "REJECT"})...)
			}
			continue
		}
		svc := svcChain(sp)
		nat.chain(svc)
		nat.add(chainServices, join([]string{"-m", "comment", "--comment", sp.name + " cluster IP"},
			proto, []string{"-d", sp.clusterIP, "--dport", port, "-j", svc})...)
		if clusterCIDR != "" {
			nat.add(svc, join([]string{"-m", "comment", "--comment", sp.name + " cluster IP"},
				proto, []string{"-d", sp.clusterIP, "--dport", port, "!", "-s", clusterCIDR, "-j", chainMarkMasq})...)
		}
		writeBalancing(nat, sp, svc, sp.endpoints)

		if sp.nodePort != 0 {
			ext := extChain(sp)
			nat.chain(ext)
			nat.add(chainNodePorts, join([]string{"-m", "comment", "--comment", sp.name}, proto,
				[]string{"--dport", nodePort, "-j", ext})...)
			if !sp.externalLocal {
				nat.add(ext, "-m", "comment", "--comment", "masquerade traffic for "+sp.name+" external destinations",
					"-j", chainMarkMasq)
				nat.add(ext, "-j", svc)
			} else {
				// Local policy keeps the client address, so only local
				// endpoints may answer; traffic from pods and from this
				// node itself still goes to any endpoint.
				if clusterCIDR != "" {
					nat.add(ext, "-m", "comment", "--comment", "pod traffic for "+sp.name+" external destinations",
						"-s", clusterCIDR, "-j", svc)
				}
				nat.add(ext, "-m", "comment", "--comment", "masquerade LOCAL traffic for "+sp.name+" external destinations",
					"-m", "addrtype", "--src-type", "LOCAL", "-j", chainMarkMasq)
				nat.add(ext, "-m", "comment", "--comment", "route LOCAL traffic for "+sp.name+" external destinations",
					"-m", "addrtype", "--src-type", "LOCAL", "-j", svc)
				if len(sp.localEndpoints) > 0 {
					svl := svlChain(sp)
					nat.chain(svl)
					nat.add(ext, "-j", svl)
					writeBalancing(nat, sp, svl, sp.localEndpoints)
				} else {
					filter.add(chainExternalServices, join([]string{"-m", "comment", "--comment", sp.name + " has no local endpoints",
						"-m", "addrtype", "--dst-type", "LOCAL"}, proto, []string{"--dport", nodePort, "-j", "DROP"})...)
				}
			}
		}
	}
	// NodePorts last, so that a cluster IP that happens to be local is
	// still a cluster IP. Loopback is excluded: it would need
	// route_localnet, which exposes 127.0.0.0/8 beyond the node.
	nat.add(chainServices, "-m", "comment", "--comment", "kubernetes service nodeports; NOTE: this must be the last rule in this chain",
		"-m", "addrtype", "--dst-type", "LOCAL", "!", "-d", "127.0.0.0/8", "-j", chainNodePorts)
	return &ruleSet{filter: filter, nat: nat}
}

// writeBalancing writes the rules of a KUBE-SVC/KUBE-SVL chain that pick
// one of eps, and the KUBE-SEP chain of each endpoint (once per sync:
// the cluster and local chains share their endpoints' chains).
func writeBalancing(nat *table, sp *servicePort, chain string, eps []endpoint) {
	if sp.affinitySeconds > 0 {
		// A client seen recently goes back to the same endpoint.
		for _, ep := range eps {
			sep := sepChain(sp, ep)
			nat.add(chain, "-m", "comment", "--comment", sp.name+" -> "+ep.String(),
				"-m", "recent", "--name", sep, "--rcheck", "--seconds", strconv.Itoa(int(sp.affinitySeconds)), "--reap",
				"-j", sep)
		}
	}
	// Endpoint i of n is taken with probability 1/(n-i), which makes every
	// endpoint equally likely; the last rule always matches.
	for i, ep := range eps {
		sep := sepChain(sp, ep)
		args := []string{"-m", "comment", "--comment", sp.name + " -> " + ep.String()}
		if n := len(eps) - i; n > 1 {
			args = append(args, "-m", "statistic", "--mode", "random", "--probability", fmt.Sprintf("%0.10f", 1.0/float64(n)))
		}
		nat.add(chain, append(args, "-j", sep)...)

		if _, done := nat.rules[sep]; done {
			continue
		}
		// Hairpin: an endpoint reaching itself through the service must
		// see the reply come back through the node, so it is masqueraded.
		nat.add(sep, "-m", "comment", "--comment", sp.name, "-s", ep.ip.String(), "-j", chainMarkMasq)
		dnat := []string{"-m", "comment", "--comment", sp.name}
		if sp.affinitySeconds > 0 {
			dnat = append(dnat, "-m", "recent", "--name", sep, "--set")
		}
		nat.add(sep, join(dnat, []string{"-m", sp.protocol, "-p", sp.protocol, "-j", "DNAT", "--to-destination", ep.String()})...)
	}
}

func join(parts ...[]string) []string {
	return slices.Concat(parts...)
}

// restoreData renders the iptables-restore input for cur. With applied
// (the rule set the kernel got from the last successful restore) only the
// top-level chains and the chains whose rules changed are written; the
// others keep their contents, since --noflush leaves unnamed chains alone.
// With applied nil everything is written. stale names per-service nat
// chains that exist but are no longer wanted: they are flushed and
// deleted in the same transaction.
func restoreData(cur, applied *ruleSet, stale []string) []byte {
	var b strings.Builder
	writeTable := func(t, old *table, stale []string) {
		var write []string
		for _, c := range t.order {
			if old != nil && !topLevel[c] {
				if prev, ok := old.rules[c]; ok && slices.Equal(prev, t.rules[c]) {
					continue
				}
			}
			write = append(write, c)
		}
		fmt.Fprintf(&b, "*%s\n", t.name)
		// ":CHAIN - [0:0]" creates the chain or, if it exists, flushes it.
		for _, c := range write {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, c := range stale {
			fmt.Fprintf(&b, ":%s - [0:0]\n", c)
		}
		for _, c := range write {
			for _, r := range t.rules[c] {
				b.WriteString(r)
				b.WriteByte('\n')
			}
		}
		for _, c := range stale {
			fmt.Fprintf(&b, "-X %s\n", c)
		}
		b.WriteString("COMMIT\n")
	}
	var oldFilter, oldNAT *table
	if applied != nil {
		oldFilter, oldNAT = applied.filter, applied.nat
	}
	writeTable(cur.filter, oldFilter, nil)
	writeTable(cur.nat, oldNAT, stale)
	return []byte(b.String())
}
