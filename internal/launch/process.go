package launch

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// Restart backoff: a master that keeps dying right after it starts is
// restarted ever more slowly, so a broken binary does not spin the machine.
const (
	minRestartDelay = 500 * time.Millisecond
	maxRestartDelay = 30 * time.Second
	stableRun       = 10 * time.Second // a run this long resets the backoff
	reapTimeout     = 5 * time.Second  // after SIGKILL
)

// spawnAll starts every master.
func (c *Cluster) spawnAll() error {
	for i := range c.members {
		if err := c.spawn(i); err != nil {
			return err
		}
	}
	return nil
}

// spawn starts master i and a goroutine that reaps it. The child gets its own
// process group (so a terminal's Ctrl-C reaches only `synod up`, which then
// stops the masters in order) and Pdeathsig=SIGKILL (so a crashed parent
// leaves no orphans), forked from the cluster's threadSpawner.
func (c *Cluster) spawn(i int) error {
	c.mu.Lock()
	m := c.members[i]
	if c.stopping {
		c.mu.Unlock()
		return ErrStopped
	}
	if m.spawning || (m.proc != nil && !isDone(m.proc)) {
		c.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrRunning, m.Name)
	}
	m.spawning = true
	snap := m.Master
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		m.spawning = false
		c.mu.Unlock()
	}()

	if err := os.MkdirAll(snap.DataDir, 0o700); err != nil {
		return err
	}
	logf, err := os.OpenFile(snap.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	fmt.Fprintf(logf, "--- launch %s: starting %s %q\n", time.Now().Format(time.RFC3339), snap.Name, snap.Args)

	var cmd *exec.Cmd
	if c.opts.Command != nil {
		cmd = c.opts.Command(snap)
	} else {
		cmd = exec.Command(c.opts.Binary, snap.Args...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := c.spawner.start(cmd); err != nil {
		logf.Close()
		return fmt.Errorf("launch: start %s: %w", snap.Name, err)
	}
	p := &process{cmd: cmd, pid: cmd.Process.Pid, started: time.Now(), done: make(chan struct{})}

	c.mu.Lock()
	if m.proc != nil {
		m.Restarts++
	}
	m.proc = p
	m.PID = p.pid
	m.Running = true
	c.mu.Unlock()
	c.log.Info("master started", "name", snap.Name, "pid", p.pid, "client", snap.ClientURL, "log", snap.LogFile)

	c.wg.Add(1)
	go c.reap(i, p, logf)
	c.writeState()
	return nil
}

// reap waits for one run of master i to end and records how it ended.
func (c *Cluster) reap(i int, p *process, logf *os.File) {
	defer c.wg.Done()
	err := p.cmd.Wait()
	logf.Close()

	c.mu.Lock()
	m := c.members[i]
	p.err = err
	close(p.done)
	if m.proc == p {
		m.PID = 0
		m.Running = false
		m.LastExit = exitString(err)
	}
	stopping := c.stopping
	c.mu.Unlock()

	if stopping {
		c.log.Info("master exited", "name", m.Name, "pid", p.pid, "exit", exitString(err))
	} else {
		c.log.Warn("master exited", "name", m.Name, "pid", p.pid, "exit", exitString(err), "ran", time.Since(p.started).Round(time.Millisecond))
	}
	c.writeState()
	c.maybeRestart(i)
}

// maybeRestart restarts master i after a backoff if Options.Restart is set,
// Start has returned, Stop has not been called and the master is down.
func (c *Cluster) maybeRestart(i int) {
	c.mu.Lock()
	m := c.members[i]
	if !c.opts.Restart || !c.started || c.stopping || m.proc == nil || !isDone(m.proc) {
		c.mu.Unlock()
		return
	}
	delay := minRestartDelay
	if ran := time.Since(m.proc.started); ran < stableRun {
		delay = minRestartDelay << min(m.Restarts, 6)
	}
	delay = min(delay, maxRestartDelay)
	name := m.Name
	c.mu.Unlock()

	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-c.stopCh:
			return
		case <-t.C:
		}
		c.log.Info("restarting master", "name", name, "after", delay)
		if err := c.spawn(i); err != nil && !errors.Is(err, ErrStopped) && !errors.Is(err, ErrRunning) {
			c.log.Error("restart failed", "name", name, "err", err)
		}
	}()
}

// Kill sends sig to master i's process. Use SIGKILL to crash it, SIGSTOP and
// SIGCONT to freeze and thaw it, SIGTERM for a graceful stop. With
// Options.Restart a master that exits is started again.
func (c *Cluster) Kill(i int, sig syscall.Signal) error {
	c.mu.Lock()
	if i < 0 || i >= len(c.members) {
		c.mu.Unlock()
		return fmt.Errorf("launch: no master %d", i)
	}
	m := c.members[i]
	if m.proc == nil || isDone(m.proc) {
		c.mu.Unlock()
		return fmt.Errorf("%w: %s", ErrNotRunning, m.Name)
	}
	pid := m.proc.pid
	c.mu.Unlock()
	// The pid can only be reused once the reaper has waited for it; the
	// window between the check above and this signal is tiny.
	return syscall.Kill(pid, sig)
}

// StartMaster starts master i again, with its original args and data dir,
// after it was killed or exited. It fails with ErrRunning if it runs.
func (c *Cluster) StartMaster(i int) error {
	if i < 0 || i >= len(c.members) {
		return fmt.Errorf("launch: no master %d", i)
	}
	return c.spawn(i)
}

// Stop sends SIGTERM (and SIGCONT, for frozen masters) to every master, waits
// up to StopTimeout, then SIGKILLs the process groups of any left. It is
// idempotent; every call returns the first call's result.
func (c *Cluster) Stop() error {
	c.stopOnce.Do(func() { c.stopErr = c.stop() })
	return c.stopErr
}

func (c *Cluster) stop() error {
	// Workers first, while the API can still tell them what to stop.
	c.stopWorkers()
	procs := c.beginStop()
	for _, p := range procs {
		syscall.Kill(p.pid, syscall.SIGTERM)
		syscall.Kill(p.pid, syscall.SIGCONT)
	}
	if left := waitAll(procs, c.opts.StopTimeout); len(left) > 0 {
		for _, p := range left {
			c.log.Warn("master ignored SIGTERM; sending SIGKILL", "pid", p.pid, "waited", c.opts.StopTimeout)
			syscall.Kill(-p.pid, syscall.SIGKILL)
		}
		if left = waitAll(left, reapTimeout); len(left) > 0 {
			return fmt.Errorf("launch: %d master(s) not reaped after SIGKILL", len(left))
		}
	}
	c.wg.Wait() // every process is reaped: the reapers are finishing up
	c.spawner.close()
	c.removeWorkerBridge()
	c.writeState()
	if c.lock != nil {
		c.lock.Close() // releases the flock
	}
	return nil
}

// killAll SIGKILLs every master and waits for them; used to retry a start.
func (c *Cluster) killAll() {
	c.mu.Lock()
	var procs []*process
	for _, m := range c.members {
		if m.proc != nil {
			procs = append(procs, m.proc)
		}
	}
	c.mu.Unlock()
	for _, p := range procs {
		syscall.Kill(-p.pid, syscall.SIGKILL)
	}
	waitAll(procs, reapTimeout)
}

// beginStop marks the cluster stopping and returns the running processes.
func (c *Cluster) beginStop() []*process {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopping = true
	close(c.stopCh)
	var procs []*process
	for _, m := range c.members {
		if m.proc != nil && !isDone(m.proc) {
			procs = append(procs, m.proc)
		}
	}
	return procs
}

// waitAll waits up to d for procs to be reaped and returns those that were not.
func waitAll(procs []*process, d time.Duration) []*process {
	deadline := time.NewTimer(d)
	defer deadline.Stop()
	for i, p := range procs {
		select {
		case <-p.done:
		case <-deadline.C:
			var left []*process
			for _, q := range procs[i:] {
				if !isDone(q) {
					left = append(left, q)
				}
			}
			return left
		}
	}
	return nil
}

func isDone(p *process) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}
