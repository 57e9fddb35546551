package runtime

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	containerd "github.com/containerd/containerd"
	"github.com/containerd/containerd/cio"
	"github.com/containerd/containerd/errdefs"
)

// TermSize is a terminal size for a TTY exec.
type TermSize struct {
	Width, Height uint32
}

// ExecOptions describes a process to run in a running container.
type ExecOptions struct {
	Cmd    []string
	Stdin  io.Reader // nil: no stdin
	Stdout io.Writer // nil: discarded
	Stderr io.Writer // nil: discarded; unused with TTY (merged into Stdout)
	TTY    bool
	// Resize, if set, delivers terminal size changes (kubectl exec -it).
	Resize <-chan TermSize
}

// Exec runs cmd in the running container id (kubectl exec, exec probes)
// and returns its exit code. Cancelling ctx kills the process (an exec
// probe's timeout).
func (r *Runtime) Exec(ctx context.Context, id string, cmd []string, stdin io.Reader, stdout, stderr io.Writer, tty bool) (int, error) {
	return r.ExecStream(ctx, id, ExecOptions{Cmd: cmd, Stdin: stdin, Stdout: stdout, Stderr: stderr, TTY: tty})
}

// ExecStream is Exec with terminal resizing.
func (r *Runtime) ExecStream(ctx context.Context, id string, o ExecOptions) (code int, err error) {
	defer r.metrics.observe("exec", time.Now(), &err)
	if len(o.Cmd) == 0 {
		return -1, fmt.Errorf("runtime: exec in %s: empty command", id)
	}
	nctx := r.nsCtx(ctx)
	c, err := r.client.LoadContainer(nctx, id)
	if err != nil {
		return -1, fmt.Errorf("runtime: exec in %s: %w", id, err)
	}
	task, err := c.Task(nctx, nil)
	if err != nil {
		return -1, fmt.Errorf("runtime: exec in %s: container not running: %w", id, err)
	}
	spec, err := c.Spec(nctx)
	if err != nil {
		return -1, fmt.Errorf("runtime: exec in %s: %w", id, err)
	}
	pspec := *spec.Process
	pspec.Args = o.Cmd
	pspec.Terminal = o.TTY
	pspec.ConsoleSize = nil

	stdout, stderr := o.Stdout, o.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	// The shim holds the stdin FIFO open until told otherwise, so the
	// end of our stdin must be passed on with CloseIO, or `cat` would
	// never see EOF.
	var (
		procMu sync.Mutex
		proc   containerd.Process
		eof    bool
	)
	closeStdin := func() {
		procMu.Lock()
		defer procMu.Unlock()
		eof = true
		if proc != nil {
			_ = proc.CloseIO(nctx, containerd.WithStdinCloser)
		}
	}
	var stdin io.Reader
	if o.Stdin != nil {
		stdin = &eofReader{r: o.Stdin, onEOF: closeStdin}
	}
	streams := []cio.Opt{cio.WithStreams(stdin, stdout, stderr), cio.WithFIFODir(r.fifoDir("exec"))}
	if o.TTY {
		streams = append(streams, cio.WithTerminal)
	}
	if err := os.MkdirAll(r.fifoDir("exec"), 0o700); err != nil {
		return -1, fmt.Errorf("runtime: exec in %s: %w", id, err)
	}
	execID := "exec-" + NewContainerID()[:16]
	p, err := task.Exec(nctx, execID, &pspec, cio.NewCreator(streams...))
	if err != nil {
		return -1, fmt.Errorf("runtime: exec in %s: %w", id, err)
	}
	// Cleanup must run even when ctx is cancelled.
	cleanupCtx := r.nsCtx(context.WithoutCancel(ctx))
	defer func() {
		if _, derr := p.Delete(cleanupCtx, containerd.WithProcessKill); derr != nil && !errdefs.IsNotFound(derr) {
			r.log.Warn("delete exec process", "id", id, "exec", execID, "err", derr)
		}
	}()
	exitC, err := p.Wait(cleanupCtx)
	if err != nil {
		return -1, fmt.Errorf("runtime: exec in %s: wait: %w", id, err)
	}
	if err := p.Start(nctx); err != nil {
		return -1, fmt.Errorf("runtime: exec in %s: %w", id, err)
	}
	procMu.Lock()
	proc = p
	if eof {
		_ = p.CloseIO(nctx, containerd.WithStdinCloser)
	}
	procMu.Unlock()

	var st containerd.ExitStatus
	done := false
	for !done {
		select {
		case st = <-exitC:
			done = true
		case sz := <-o.Resize:
			_ = p.Resize(nctx, sz.Width, sz.Height)
		case <-ctx.Done():
			_ = p.Kill(cleanupCtx, syscall.SIGKILL)
			select {
			case <-exitC:
			case <-time.After(10 * time.Second):
				r.log.Warn("exec process survived SIGKILL for 10s", "id", id, "exec", execID)
			}
			return -1, fmt.Errorf("runtime: exec in %s: %w", id, ctx.Err())
		}
	}
	// Let the output copiers finish, bounded: a background child of the
	// command may keep the streams open.
	waited := make(chan struct{})
	go func() {
		p.IO().Wait()
		close(waited)
	}()
	select {
	case <-waited:
	case <-time.After(2 * time.Second):
		p.IO().Cancel()
	}
	exit, _, err := st.Result()
	if err != nil {
		return -1, fmt.Errorf("runtime: exec in %s: %w", id, err)
	}
	return int(exit), nil
}

// eofReader calls onEOF once when the wrapped reader ends.
type eofReader struct {
	r     io.Reader
	once  sync.Once
	onEOF func()
}

func (e *eofReader) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil {
		e.once.Do(e.onEOF)
	}
	return n, err
}
