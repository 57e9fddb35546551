package proxy

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"

	"github.com/coreos/go-iptables/iptables"
	"golang.org/x/sys/unix"

	"synod/node/iptbackend"
)

// Runner executes iptables commands for the proxier. ExecRunner is the
// real one; tests wrap it to count invocations.
type Runner interface {
	// Restore feeds data to `iptables-restore --noflush`: the tables and
	// chains it names are changed in one transaction, others are kept.
	Restore(ctx context.Context, data []byte) error
	// Save returns `iptables-save -t table`.
	Save(ctx context.Context, table string) ([]byte, error)
	// EnsureChain creates chain in table if it does not exist.
	EnsureChain(table, chain string) error
	// EnsureRule inserts rule at the top of chain unless it is there.
	EnsureRule(table, chain string, rule ...string) error
}

// ExecRunner runs the iptables binaries (iptables through go-iptables,
// iptables-restore and iptables-save directly), optionally inside a
// network namespace.
type ExecRunner struct {
	netns string
	ipt   *iptables.IPTables
	tools iptbackend.Tools
}

// NewRunner returns a Runner using tools (one iptables backend's binaries)
// for the network namespace at netnsPath (for example /run/netns/NAME, as
// `ip netns add NAME` creates), or for the process's own namespace if
// netnsPath is empty.
//
// Commands run in the namespace by switching a locked OS thread into it
// and forking from that thread (children inherit the thread's namespace),
// so go-iptables works unchanged and no `ip netns exec` wrapper is needed.
func NewRunner(netnsPath string, tools iptbackend.Tools) (*ExecRunner, error) {
	if netnsPath != "" {
		if _, err := os.Stat(netnsPath); err != nil {
			return nil, fmt.Errorf("network namespace: %w", err)
		}
	}
	if tools.IPTables == "" || tools.Restore == "" || tools.Save == "" {
		return nil, fmt.Errorf("iptables tools not set: %+v", tools)
	}
	ipt, err := iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Path(tools.IPTables), iptables.Timeout(5))
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	return &ExecRunner{netns: netnsPath, ipt: ipt, tools: tools}, nil
}

// NewAutoRunner resolves backend (iptbackend.Auto detects) inside the
// namespace at netnsPath and returns a Runner for it, with the reason for
// the choice.
func NewAutoRunner(ctx context.Context, netnsPath string, backend iptbackend.Backend) (*ExecRunner, string, error) {
	var tools iptbackend.Tools
	var reason string
	resolve := func() (err error) {
		tools, reason, err = iptbackend.Resolve(ctx, backend)
		return err
	}
	var err error
	if netnsPath == "" {
		err = resolve()
	} else {
		err = InNetNS(netnsPath, resolve)
	}
	if err != nil {
		return nil, "", err
	}
	r, err := NewRunner(netnsPath, tools)
	return r, reason, err
}

// Tools reports the runner's iptables backend and binaries.
func (r *ExecRunner) Tools() iptbackend.Tools { return r.tools }

// Restore implements Runner.
func (r *ExecRunner) Restore(ctx context.Context, data []byte) error {
	return r.in(func() error {
		cmd := exec.CommandContext(ctx, r.tools.Restore, "--noflush", "--wait")
		cmd.Stdin = bytes.NewReader(data)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("iptables-restore: %w: %s", err, bytes.TrimSpace(out))
		}
		return nil
	})
}

// Save implements Runner.
func (r *ExecRunner) Save(ctx context.Context, table string) ([]byte, error) {
	var out []byte
	err := r.in(func() error {
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, r.tools.Save, "-t", table)
		cmd.Stderr = &stderr
		var err error
		if out, err = cmd.Output(); err != nil {
			return fmt.Errorf("iptables-save -t %s: %w: %s", table, err, bytes.TrimSpace(stderr.Bytes()))
		}
		return nil
	})
	return out, err
}

// EnsureChain implements Runner.
func (r *ExecRunner) EnsureChain(table, chain string) error {
	return r.in(func() error {
		ok, err := r.ipt.ChainExists(table, chain)
		if err != nil {
			return fmt.Errorf("check chain %s/%s: %w", table, chain, err)
		}
		if ok {
			return nil
		}
		if err := r.ipt.NewChain(table, chain); err != nil {
			return fmt.Errorf("create chain %s/%s: %w", table, chain, err)
		}
		return nil
	})
}

// EnsureRule implements Runner.
func (r *ExecRunner) EnsureRule(table, chain string, rule ...string) error {
	return r.in(func() error {
		ok, err := r.ipt.Exists(table, chain, rule...)
		if err != nil {
			return fmt.Errorf("check rule in %s/%s: %w", table, chain, err)
		}
		if ok {
			return nil
		}
		if err := r.ipt.Insert(table, chain, 1, rule...); err != nil {
			return fmt.Errorf("insert rule in %s/%s: %w", table, chain, err)
		}
		return nil
	})
}

// in runs fn with the runner's network namespace as the namespace of the
// processes fn starts.
func (r *ExecRunner) in(fn func() error) error {
	if r.netns == "" {
		return fn()
	}
	return InNetNS(r.netns, fn)
}

// InNetNS runs fn on an OS thread switched into the network namespace at
// path. Sockets fn creates and processes it starts belong to that
// namespace. fn must not start goroutines that expect the namespace.
func InNetNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		// The thread is unlocked only after it is back in its original
		// namespace; otherwise it exits with this goroutine, so no other
		// goroutine ever runs in the wrong namespace.
		runtime.LockOSThread()
		errc <- func() error {
			orig, err := os.Open("/proc/thread-self/ns/net")
			if err != nil {
				runtime.UnlockOSThread()
				return fmt.Errorf("open own network namespace: %w", err)
			}
			defer orig.Close()
			target, err := os.Open(path)
			if err != nil {
				runtime.UnlockOSThread()
				return fmt.Errorf("open network namespace: %w", err)
			}
			defer target.Close()
			if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
				runtime.UnlockOSThread()
				return fmt.Errorf("enter network namespace %s: %w", path, err)
			}
			fnErr := fn()
			if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
				runtime.UnlockOSThread()
			}
			return fnErr
		}()
	}()
	return <-errc
}
