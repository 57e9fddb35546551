package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Fault kinds against a deployed cluster (--inventory). kill and
// leader-kill go through SSH and work on any inventory; the machine and
// link kinds act on the nspawn testbed's machines from the testbed host
// (ansible/testbed/up.sh), the way a VM or its network would fail.
const (
	// KindMachineStop kills a master's whole machine at once (SIGKILL of
	// the container's init: every process dies, like a power cut) and
	// boots it again after the hold; synod-master starts with the boot.
	KindMachineStop Kind = "machine-stop"
	// KindMachinePause SIGSTOPs every process of a master's machine
	// (sometimes the leader's) and SIGCONTs them after the hold, like a
	// VM that is paused.
	KindMachinePause Kind = "machine-pause"
	// KindLinkCut sets a master's (sometimes the leader's) host-side veth
	// down and up again after the hold: the machine is cut off from
	// everything, the control host's clients too.
	KindLinkCut Kind = "link-cut"
)

// RemoteKinds lists the kinds --inventory runs support, in schedule order.
var RemoteKinds = []Kind{KindKill, KindLeaderKill, KindMachineStop, KindMachinePause, KindLinkCut}

// RemoteKindHelp describes each remote kind for --help.
var RemoteKindHelp = map[Kind]string{
	KindKill:         "systemctl kill --kill-who=main -s KILL synod-master on a random master (via SSH); systemctl start after the hold",
	KindLeaderKill:   "the same on the raft leader",
	KindMachineStop:  "testbed: SIGKILL a master machine's init (sometimes the leader's), boot it again after the hold",
	KindMachinePause: "testbed: SIGSTOP every process of a master machine (sometimes the leader's), SIGCONT after the hold",
	KindLinkCut:      "testbed: set a master machine's (sometimes the leader's) host-side veth down, up after the hold",
}

// ParseRemoteKinds parses --faults for an --inventory run ("all" = every
// remote kind), deduplicated and in canonical order.
func ParseRemoteKinds(s string) ([]Kind, error) {
	seen := map[Kind]bool{}
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		switch {
		case f == "":
		case f == "all":
			for _, k := range RemoteKinds {
				seen[k] = true
			}
		case !contains(RemoteKinds, Kind(f)):
			return nil, fmt.Errorf("fault %q is not supported with --inventory (known: %s, or all)", f, joinKinds(RemoteKinds))
		default:
			seen[Kind(f)] = true
		}
	}
	var out []Kind
	for _, k := range RemoteKinds {
		if seen[k] {
			out = append(out, k)
		}
	}
	if len(out) == 0 {
		return nil, errors.New("no fault kinds given")
	}
	return out, nil
}

func contains(ks []Kind, k Kind) bool {
	for _, x := range ks {
		if x == k {
			return true
		}
	}
	return false
}

// RemoteSchedule is Schedule for the remote kinds: the same seeded
// choices (kind, hold, victim, whether the leader is the victim).
func RemoteSchedule(c ScheduleConfig) []Step {
	rng := rand.New(rand.NewPCG(uint64(c.Seed), 0x73796e6f64)) // "synod"
	lo, hi := c.HoldRange()
	n := c.Steps()
	steps := make([]Step, 0, n)
	for i := 0; i < n && len(c.Kinds) > 0; i++ {
		s := Step{N: i + 1, At: time.Duration(i) * c.Interval, Kind: c.Kinds[rng.IntN(len(c.Kinds))]}
		s.Hold = lo
		if hi > lo {
			s.Hold = lo + time.Duration(rng.Int64N(int64(hi-lo)/int64(100*time.Millisecond)+1))*100*time.Millisecond
		}
		perm := rng.Perm(c.Masters)
		coin := rng.IntN(2) == 0
		switch s.Kind {
		case KindKill:
			s.Members = perm[:1]
		case KindMachineStop, KindMachinePause, KindLinkCut:
			s.Leader = coin
			if !coin {
				s.Members = perm[:1]
			}
		}
		steps = append(steps, s)
	}
	return steps
}

// FormatRemoteSchedule renders a remote schedule with the inventory's
// master names.
func FormatRemoteSchedule(steps []Step, names []string) string {
	var b strings.Builder
	for _, s := range steps {
		target := "leader"
		if !s.Leader && len(s.Members) > 0 {
			target = names[s.Members[0]]
		}
		fmt.Fprintf(&b, "#%d at %s: %s %s for %s\n", s.N, s.At, s.Kind, target, s.Hold)
	}
	return b.String()
}

// Testbed is the nspawn testbed's state dir (ansible/testbed/common.sh's
// TB_STATE): run/<name>.pid is each machine's systemd-nspawn pid, and
// tb-<name> its host-side veth.
type Testbed struct{ State string }

func (tb Testbed) pidFile(name string) string { return filepath.Join(tb.State, "run", name+".pid") }

// Check reports why the testbed cannot act on machine name, or nil.
func (tb Testbed) Check(name string) error {
	pid, err := tb.nspawnPID(name)
	if err != nil {
		return err
	}
	if err := syscall.Kill(pid, 0); err != nil {
		return fmt.Errorf("chaos: testbed machine %s (nspawn pid %d) is not running: %w", name, pid, err)
	}
	return nil
}

func (tb Testbed) nspawnPID(name string) (int, error) {
	b, err := os.ReadFile(tb.pidFile(name))
	if err != nil {
		return 0, fmt.Errorf("chaos: testbed machine %s (is this the nspawn testbed's host?): %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("chaos: testbed pid file %s: %w", tb.pidFile(name), err)
	}
	return pid, nil
}

// initPID is the pid (on the host) of the machine's init: the child of its
// nspawn process that is pid 1 in its own pid namespace.
func (tb Testbed) initPID(name string) (int, error) {
	nspawn, err := tb.nspawnPID(name)
	if err != nil {
		return 0, err
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", nspawn))
	for _, t := range tasks {
		b, _ := os.ReadFile(t)
		for _, f := range strings.Fields(string(b)) {
			pid, _ := strconv.Atoi(f)
			if nsPIDs(pid) == "1" {
				return pid, nil
			}
		}
	}
	return 0, fmt.Errorf("chaos: no init process under machine %s's nspawn (pid %d)", name, nspawn)
}

// nsPIDs is the last field of /proc/pid/status's NSpid: the pid in its
// innermost namespace ("" if unknown).
func nsPIDs(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ""
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "NSpid:"); ok {
			f := strings.Fields(rest)
			if len(f) > 1 {
				return f[len(f)-1]
			}
		}
	}
	return ""
}

// signalMachine sends sig to every process in the pid namespace of
// machine name's init (twice over, to catch what forked meanwhile).
func (tb Testbed) signalMachine(name string, sig syscall.Signal) error {
	initPID, err := tb.initPID(name)
	if err != nil {
		return err
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", initPID))
	if err != nil {
		return fmt.Errorf("chaos: pid namespace of %s: %w", name, err)
	}
	for range 2 {
		procs, _ := filepath.Glob("/proc/[0-9]*/ns/pid")
		for _, p := range procs {
			if l, err := os.Readlink(p); err != nil || l != ns {
				continue
			}
			pid, _ := strconv.Atoi(strings.Split(p, "/")[2])
			syscall.Kill(pid, sig)
		}
	}
	return nil
}

// StopMachine kills machine name whole (SIGKILL of its init, which takes
// every process of its pid namespace along) and waits (up to 30s) for its
// nspawn to exit. It returns the command line to boot it again with.
func (tb Testbed) StopMachine(name string) (*machineBoot, error) {
	nspawn, err := tb.nspawnPID(name)
	if err != nil {
		return nil, err
	}
	boot, err := readBoot(nspawn)
	if err != nil {
		return nil, fmt.Errorf("chaos: machine %s: %w", name, err)
	}
	initPID, err := tb.initPID(name)
	if err != nil {
		return nil, err
	}
	if err := syscall.Kill(initPID, syscall.SIGKILL); err != nil {
		return nil, fmt.Errorf("chaos: kill machine %s (init pid %d): %w", name, initPID, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for syscall.Kill(nspawn, 0) == nil {
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("chaos: machine %s's nspawn (pid %d) did not exit 30s after its init was killed", name, nspawn)
		}
		time.Sleep(100 * time.Millisecond)
		if st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", nspawn)); strings.Contains(string(st), ") Z ") {
			break // exited; its parent (init, or this harness) reaps it
		}
	}
	return boot, nil
}

// machineBoot is how a machine's nspawn was started: argv, environment
// and working dir, read from /proc before it was killed.
type machineBoot struct {
	args []string
	env  []string
	dir  string
}

func readBoot(pid int) (*machineBoot, error) {
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return nil, fmt.Errorf("nspawn command line: %w", err)
	}
	environ, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
	if err != nil {
		return nil, fmt.Errorf("nspawn environment: %w", err)
	}
	dir, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return nil, fmt.Errorf("nspawn working dir: %w", err)
	}
	b := &machineBoot{args: splitNUL(cmdline), env: splitNUL(environ), dir: dir}
	if len(b.args) == 0 || !strings.HasSuffix(b.args[0], "systemd-nspawn") {
		return nil, fmt.Errorf("pid %d is not systemd-nspawn: %q", pid, b.args)
	}
	return b, nil
}

func splitNUL(b []byte) []string {
	var out []string
	for _, s := range strings.Split(string(b), "\x00") {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// StartMachine boots machine name again with the command line StopMachine
// read, in a session of its own so that it outlives this process, its
// output appended to run/<name>.log and its pid in run/<name>.pid (where
// down.sh finds it).
func (tb Testbed) StartMachine(name string, boot *machineBoot) error {
	logf, err := os.OpenFile(filepath.Join(tb.State, "run", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	defer logf.Close()
	cmd := exec.Command(boot.args[0], boot.args[1:]...)
	cmd.Env, cmd.Dir = boot.env, boot.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("chaos: boot machine %s: %w", name, err)
	}
	pid := cmd.Process.Pid
	// Reaped here while the harness runs; after it exits the machine is
	// re-parented to init and down.sh stops it by its pid.
	go cmd.Wait()
	if err := os.WriteFile(tb.pidFile(name), []byte(strconv.Itoa(pid)+"\n"), 0o644); err != nil {
		return fmt.Errorf("chaos: %w", err)
	}
	return nil
}

// SetLink sets machine name's host-side veth (tb-<name>) up or down.
func (tb Testbed) SetLink(ctx context.Context, name string, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	out, err := exec.CommandContext(ctx, "ip", "link", "set", "tb-"+name, state).CombinedOutput()
	if err != nil {
		return fmt.Errorf("chaos: ip link set tb-%s %s: %w: %s", name, state, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// injectRemote applies step s to the deployed cluster, holds it and heals
// it, like inject does locally.
func (r *remoteRunner) injectRemote(ctx context.Context, s Step) (injection, error) {
	c := r.cluster
	v := -1
	if s.Kind == KindLeaderKill || s.Leader {
		l, err := c.Leader(ctx)
		if err != nil {
			return injection{}, fmt.Errorf("find the leader: %w", err)
		}
		v = l
	} else if len(s.Members) > 0 {
		v = s.Members[0]
	} else {
		return injection{}, fmt.Errorf("step %d (%s) names no victim", s.N, s.Kind)
	}
	name := c.Name(v)
	var inj injection
	inj.fault.Kind = string(s.Kind)
	inj.fault.Target = name
	desc := ""
	if l, err := c.Leader(ctx); err == nil {
		inj.leader = c.Name(l)
		desc = " (leader " + inj.leader + ")"
	}
	r.logf("fault %d/%d: %s %s for %s%s", s.N, len(r.steps), s.Kind, name, s.Hold, desc)

	var heal func(ctx context.Context) error
	var applyErr error
	inj.fault.Start = time.Now()
	switch s.Kind {
	case KindKill, KindLeaderKill:
		// The unit's Restart=always brings it back after RestartSec; the
		// heal's start makes sure it is up once the hold is over. Only
		// the main process: in an nspawn machine (cgroup v1) signalling
		// the whole control group fails with EIO after killing it.
		_, applyErr = c.SSH(ctx, v, 15*time.Second, "systemctl kill --kill-who=main -s KILL synod-master")
		heal = func(ctx context.Context) error {
			_, err := c.SSH(ctx, v, 30*time.Second, "systemctl start synod-master")
			return err
		}
	case KindMachineStop:
		var boot *machineBoot
		boot, applyErr = r.testbed.StopMachine(name)
		if boot != nil {
			heal = func(context.Context) error { return r.testbed.StartMachine(name, boot) }
		}
	case KindMachinePause:
		applyErr = r.testbed.signalMachine(name, syscall.SIGSTOP)
		heal = func(context.Context) error { return r.testbed.signalMachine(name, syscall.SIGCONT) }
	case KindLinkCut:
		applyErr = r.testbed.SetLink(ctx, name, false)
		inj.fault.Start = time.Now()
		heal = func(ctx context.Context) error { return r.testbed.SetLink(ctx, name, true) }
	default:
		return injection{}, fmt.Errorf("fault kind %q is not supported with --inventory", s.Kind)
	}
	if applyErr == nil {
		sleepCtx(ctx, time.Until(inj.fault.Start.Add(s.Hold)))
	}
	var healErr error
	if heal != nil {
		// Heal even when interrupted: a cut link or a paused machine
		// must not outlive the run.
		healErr = heal(context.WithoutCancel(ctx))
	}
	inj.fault.End = time.Now()
	return inj, errors.Join(applyErr, healErr)
}
