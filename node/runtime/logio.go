package runtime

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/containerd/cio"
	"github.com/containerd/fifo"
)

// criTimestamp is the CRI log format's fixed-width RFC 3339 timestamp
// (kubelet's `timeFormat`), so lines sort and parse uniformly.
const criTimestamp = "2006-01-02T15:04:05.000000000Z07:00"

// maxLogLine is where a long line is split into "P" (partial) records,
// as CRI runtimes do (16 KiB).
const maxLogLine = 16 * 1024

// logIO is a cio.IO that copies a container's stdout and stderr FIFOs into
// a CRI-format log file. The shim creates the writing ends; it also keeps
// a reader open, so closing ours (kubelet restart) does not break the
// container's output, and a later logIO can attach to the same FIFOs.
type logIO struct {
	config cio.Config
	cancel context.CancelFunc
	pipes  []io.ReadCloser
	file   *os.File
	mu     sync.Mutex // one record at a time into file
	wg     sync.WaitGroup
	done   chan struct{} // closed when both copiers ended
	once   sync.Once
}

// fifoDir is where a container's FIFOs live; it must survive a kubelet
// restart (StateDir, not a temp dir) for re-attaching.
func (r *Runtime) fifoDir(id string) string { return filepath.Join(r.stateDir, "fifo", id) }

// newLogIO creates (if create) or opens the FIFOs named in cfg and starts
// copying them into logPath.
func newLogIO(parent context.Context, cfg cio.Config, logPath string, create bool) (_ *logIO, err error) {
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	file, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open container log: %w", err)
	}
	ctx, cancel := context.WithCancel(parent)
	l := &logIO{config: cfg, cancel: cancel, file: file, done: make(chan struct{})}
	defer func() {
		if err != nil {
			l.Cancel()
			_ = l.Close()
		}
	}()
	flags := syscall.O_RDONLY | syscall.O_NONBLOCK // open without waiting for the writer
	if create {
		flags |= syscall.O_CREAT
	}
	for _, s := range []struct{ path, name string }{{cfg.Stdout, "stdout"}, {cfg.Stderr, "stderr"}} {
		if s.path == "" {
			continue
		}
		p, err := fifo.OpenFifo(ctx, s.path, flags, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open %s fifo: %w", s.name, err)
		}
		l.pipes = append(l.pipes, p)
		l.wg.Add(1)
		go func(name string) {
			defer l.wg.Done()
			l.copy(name, p)
		}(s.name)
	}
	go func() {
		l.wg.Wait()
		close(l.done)
	}()
	return l, nil
}

// copy turns one stream into CRI log records:
// `<timestamp> <stream> <F|P> <content>\n`.
func (l *logIO) copy(stream string, r io.Reader) {
	br := bufio.NewReaderSize(r, maxLogLine)
	var rec []byte
	for {
		line, isPrefix, err := br.ReadLine()
		if err != nil {
			return // EOF: the container closed the stream; or cancelled
		}
		tag := "F"
		if isPrefix {
			tag = "P"
		}
		rec = append(rec[:0], time.Now().UTC().Format(criTimestamp)...)
		rec = append(rec, ' ')
		rec = append(rec, stream...)
		rec = append(rec, ' ')
		rec = append(rec, tag...)
		rec = append(rec, ' ')
		rec = append(rec, line...)
		rec = append(rec, '\n')
		l.mu.Lock()
		_, _ = l.file.Write(rec) // a full disk must not block the container
		l.mu.Unlock()
	}
}

func (l *logIO) Config() cio.Config { return l.config }

// Cancel stops the copiers (closing our FIFO ends; the shim's stay open).
func (l *logIO) Cancel() {
	l.cancel()
	for _, p := range l.pipes {
		_ = p.Close()
	}
}

// Wait waits for both copiers to end.
func (l *logIO) Wait() { <-l.done }

// Close releases the FIFOs and the log file.
func (l *logIO) Close() error {
	var err error
	l.once.Do(func() {
		for _, p := range l.pipes {
			_ = p.Close()
		}
		l.cancel()
		err = l.file.Close()
	})
	return err
}

// drain waits up to d for the copiers to reach EOF (the container exited
// and the shim flushed its output), then closes everything.
func (l *logIO) drain(d time.Duration) {
	select {
	case <-l.done:
	case <-time.After(d):
		// A daemonized grandchild may still hold the stream open.
		l.Cancel()
		<-l.done
	}
	_ = l.Close()
}
