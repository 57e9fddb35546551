package runtime

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// LogOptions select what ReadLog returns; they mirror kubectl logs'
// flags (PodLogOptions).
type LogOptions struct {
	// Tail returns only the last Tail lines (negative: all).
	Tail int64
	// Follow keeps reading as the file grows, until ctx is cancelled or,
	// once everything written so far is read, Exited reports true.
	Follow bool
	// Exited is polled while following; nil means "never" (follow until
	// ctx ends). The kubelet passes "the container is no longer running".
	Exited func() bool
	// Timestamps prefixes each line with its RFC 3339 timestamp.
	Timestamps bool
	// Since drops lines logged before it (zero: none dropped).
	Since time.Time
	// LimitBytes stops after this many bytes of output (0: no limit).
	LimitBytes int64
	// Stream limits the output to "stdout" or "stderr" ("": both).
	Stream string
}

// followPoll is how often a followed log is checked for growth.
const followPoll = 100 * time.Millisecond

// logRecord is one parsed CRI log record.
type logRecord struct {
	ts      time.Time
	stream  string
	partial bool
	content []byte
}

// parseCRILine parses `<ts> <stream> <F|P> <content>` (without newline).
func parseCRILine(line []byte) (logRecord, error) {
	var r logRecord
	f := bytes.SplitN(line, []byte{' '}, 4)
	if len(f) < 3 {
		return r, fmt.Errorf("malformed CRI log line %q", line)
	}
	ts, err := time.Parse(time.RFC3339Nano, string(f[0]))
	if err != nil {
		return r, fmt.Errorf("malformed CRI log timestamp %q: %w", f[0], err)
	}
	r.ts, r.stream, r.partial = ts, string(f[1]), string(f[2]) == "P"
	if len(f) == 4 {
		r.content = f[3]
	}
	return r, nil
}

// ReadLog writes the container log at path to w as `kubectl logs` shows
// it: content only (partial records joined into their line), optionally
// timestamped, tailed, filtered and followed. A missing file is an
// error wrapping os.ErrNotExist.
func ReadLog(ctx context.Context, path string, opts LogOptions, w io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("runtime: read log: %w", err)
	}
	defer f.Close()
	lw := &lineWriter{w: w, opts: opts}

	start := int64(0)
	if opts.Tail >= 0 {
		if start, err = tailOffset(f, opts.Tail, opts.Stream); err != nil {
			return fmt.Errorf("runtime: read log %s: %w", path, err)
		}
	}
	if _, err := f.Seek(start, io.SeekStart); err != nil {
		return fmt.Errorf("runtime: read log %s: %w", path, err)
	}
	br := bufio.NewReaderSize(f, 64*1024)
	var pending []byte // an incomplete record at EOF (writer mid-line)
	ticker := (*time.Ticker)(nil)
	for {
		chunk, err := br.ReadBytes('\n')
		pending = append(pending, chunk...)
		if err == nil {
			line := bytes.TrimSuffix(pending, []byte{'\n'})
			pending = pending[:0]
			rec, perr := parseCRILine(line)
			if perr != nil {
				continue // a torn line from a crash: skip, as the kubelet does
			}
			if done, werr := lw.add(rec); werr != nil || done {
				return werr
			}
			continue
		}
		if !errors.Is(err, io.EOF) {
			return fmt.Errorf("runtime: read log %s: %w", path, err)
		}
		if !opts.Follow {
			return lw.flush()
		}
		if opts.Exited != nil && opts.Exited() {
			// Everything is written once the container has exited;
			// one more read picks up what came just before.
			if _, err := br.Peek(1); err == nil {
				continue
			}
			return lw.flush()
		}
		if ticker == nil {
			ticker = time.NewTicker(followPoll)
			defer ticker.Stop()
		}
		select {
		case <-ctx.Done():
			return lw.flush()
		case <-ticker.C:
		}
	}
}

// tailOffset returns the offset of the record that starts the last n
// logical lines (of the given stream) in f.
func tailOffset(f *os.File, n int64, stream string) (int64, error) {
	if n == 0 {
		return f.Seek(0, io.SeekEnd)
	}
	br := bufio.NewReaderSize(f, 64*1024)
	var (
		off    int64
		starts []int64 // ring of the last n line starts
		cur    = int64(-1)
	)
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && line[len(line)-1] == '\n' {
			rec, perr := parseCRILine(line[:len(line)-1])
			if perr == nil && (stream == "" || rec.stream == stream) {
				if cur < 0 {
					cur = off
				}
				if !rec.partial {
					starts = append(starts, cur)
					if int64(len(starts)) > n {
						starts = starts[1:]
					}
					cur = -1
				}
			}
			off += int64(len(line))
		}
		if err != nil {
			break
		}
	}
	if len(starts) == 0 {
		return 0, nil
	}
	return starts[0], nil
}

// lineWriter joins partial records and applies the output options.
type lineWriter struct {
	w       io.Writer
	opts    LogOptions
	partial map[string][]byte // per stream: content of P records so far
	first   map[string]time.Time
	written int64
}

// add takes one record; done reports that LimitBytes is reached.
func (l *lineWriter) add(r logRecord) (done bool, err error) {
	if l.opts.Stream != "" && r.stream != l.opts.Stream {
		return false, nil
	}
	if l.partial == nil {
		l.partial, l.first = map[string][]byte{}, map[string]time.Time{}
	}
	if _, ok := l.first[r.stream]; !ok {
		l.first[r.stream] = r.ts
	}
	l.partial[r.stream] = append(l.partial[r.stream], r.content...)
	if r.partial {
		return false, nil
	}
	line, ts := l.partial[r.stream], l.first[r.stream]
	delete(l.partial, r.stream)
	delete(l.first, r.stream)
	return l.emit(ts, line)
}

func (l *lineWriter) emit(ts time.Time, content []byte) (bool, error) {
	if !l.opts.Since.IsZero() && ts.Before(l.opts.Since) {
		return false, nil
	}
	var out []byte
	if l.opts.Timestamps {
		out = append(out, ts.Format(time.RFC3339Nano)...)
		out = append(out, ' ')
	}
	out = append(out, content...)
	out = append(out, '\n')
	done := false
	if l.opts.LimitBytes > 0 && l.written+int64(len(out)) >= l.opts.LimitBytes {
		out, done = out[:l.opts.LimitBytes-l.written], true
	}
	n, err := l.w.Write(out)
	l.written += int64(n)
	if err != nil {
		return true, fmt.Errorf("runtime: write log: %w", err)
	}
	return done, nil
}

// flush writes partial records that never got their final record (the
// container died mid-line).
func (l *lineWriter) flush() error {
	for stream, content := range l.partial {
		if _, err := l.emit(l.first[stream], content); err != nil {
			return err
		}
	}
	l.partial = nil
	return nil
}
