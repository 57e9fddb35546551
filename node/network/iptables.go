package network

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strings"

	"github.com/coreos/go-iptables/iptables"

	"synod/node/iptbackend"
)

// The chains this package owns. Their contents are rewritten as a whole
// with one iptables-restore; only the jumps into them from the built-in
// chains are managed rule by rule.
const (
	ChainPostrouting = "SYNOD-POSTROUTING" // nat: masquerade pod traffic leaving the cluster
	ChainForward     = "SYNOD-FORWARD"     // filter: accept pod traffic
)

const jumpComment = "synod pod network"

type jump struct{ table, from, to string }

var jumps = [...]jump{
	{"nat", "POSTROUTING", ChainPostrouting},
	{"filter", "FORWARD", ChainForward},
}

func (j jump) spec() []string {
	return []string{"-m", "comment", "--comment", jumpComment, "-j", j.to}
}

// iptablesRunner runs one iptables backend's tools in the node's network
// namespace.
type iptablesRunner struct {
	netns   string
	ipt     *iptables.IPTables
	restore string
	tools   iptbackend.Tools
}

// IPTables reports the iptables backend and tools the network uses.
func (n *Network) IPTables() iptbackend.Tools { return n.ipt.tools }

// newIPTablesRunner uses tools, or the backend detected in the namespace
// when tools is zero.
func newIPTablesRunner(netnsPath string, tools iptbackend.Tools) (*iptablesRunner, error) {
	if tools.IPTables == "" {
		err := inNetNS(netnsPath, func() (err error) {
			tools, _, err = iptbackend.Detect(context.Background())
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("iptables: %w", err)
		}
	}
	ipt, err := iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Path(tools.IPTables), iptables.Timeout(5))
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return &iptablesRunner{netns: netnsPath, ipt: ipt, restore: tools.Restore, tools: tools}, nil
}

// iptablesRules returns the restore text for both chains.
func (n *Network) iptablesRules() string {
	pod := n.podCIDR.String()
	var exempt []string
	if n.cluster != nil {
		exempt = []string{n.cluster.String()}
	} else {
		exempt = append([]string{pod}, n.peerCIDRs...)
	}
	var b strings.Builder
	b.WriteString("*nat\n:" + ChainPostrouting + " - [0:0]\n")
	for _, d := range exempt {
		fmt.Fprintf(&b, "-A %s -s %s -d %s -j RETURN\n", ChainPostrouting, pod, d)
	}
	fmt.Fprintf(&b, "-A %s -s %s -d 224.0.0.0/4 -j RETURN\n", ChainPostrouting, pod)
	masq := "-j MASQUERADE"
	if n.ipt.ipt.HasRandomFully() {
		masq += " --random-fully"
	}
	fmt.Fprintf(&b, "-A %s -s %s %s\n", ChainPostrouting, pod, masq)
	b.WriteString("COMMIT\n*filter\n:" + ChainForward + " - [0:0]\n")
	accept := pod
	if n.cluster != nil {
		accept = n.cluster.String()
	}
	fmt.Fprintf(&b, "-A %s -s %s -j ACCEPT\n", ChainForward, accept)
	fmt.Fprintf(&b, "-A %s -d %s -j ACCEPT\n", ChainForward, accept)
	b.WriteString("COMMIT\n")
	return b.String()
}

// syncIPTablesLocked rewrites the chains atomically, then makes sure the
// built-in chains jump to them (first, ahead of e.g. Docker's FORWARD DROP).
func (n *Network) syncIPTablesLocked(ctx context.Context) error {
	r := n.ipt
	rules := n.iptablesRules()
	return inNetNS(r.netns, func() error {
		cmd := exec.CommandContext(ctx, r.restore, "--noflush", "--wait")
		cmd.Stdin = strings.NewReader(rules)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("iptables-restore: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		for _, j := range jumps {
			ok, err := r.ipt.Exists(j.table, j.from, j.spec()...)
			if err != nil {
				return fmt.Errorf("iptables: check jump %s/%s: %w", j.table, j.from, err)
			}
			if !ok {
				if err := r.ipt.Insert(j.table, j.from, 1, j.spec()...); err != nil {
					return fmt.Errorf("iptables: jump %s/%s -> %s: %w", j.table, j.from, j.to, err)
				}
			}
		}
		return nil
	})
}

// cleanup removes the jumps and the chains.
func (r *iptablesRunner) cleanup(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return inNetNS(r.netns, func() error {
		for _, j := range jumps {
			// With the chain gone, iptables cannot even check for a jump
			// to it (and none can exist).
			exists, err := r.ipt.ChainExists(j.table, j.to)
			if err != nil {
				return fmt.Errorf("iptables: check chain %s/%s: %w", j.table, j.to, err)
			}
			if !exists {
				continue
			}
			if err := r.ipt.DeleteIfExists(j.table, j.from, j.spec()...); err != nil {
				return fmt.Errorf("iptables: delete jump %s/%s: %w", j.table, j.from, err)
			}
			if err := r.ipt.ClearAndDeleteChain(j.table, j.to); err != nil {
				return fmt.Errorf("iptables: delete chain %s/%s: %w", j.table, j.to, err)
			}
		}
		return nil
	})
}
