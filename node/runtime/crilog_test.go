package runtime

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const sampleLog = `2016-10-06T00:17:09.669794202Z stdout F first
2016-10-06T00:17:10.000000000Z stderr F oops
2016-10-06T00:17:11.000000000Z stdout P long 
2016-10-06T00:17:11.500000000Z stdout P line 
2016-10-06T00:17:12.000000000Z stdout F joined
garbage that is not a record
2016-10-06T00:17:13.000000000Z stdout F 
2016-10-06T00:17:14.000000000Z stdout F last
`

func writeSample(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "0.log")
	if err := os.WriteFile(path, []byte(sampleLog), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func readAll(t *testing.T, path string, o LogOptions) string {
	t.Helper()
	var b bytes.Buffer
	if err := ReadLog(context.Background(), path, o, &b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestReadLogOptions(t *testing.T) {
	path := writeSample(t)
	for _, tc := range []struct {
		name string
		o    LogOptions
		want string
	}{
		{"all", LogOptions{Tail: -1}, "first\noops\nlong line joined\n\nlast\n"},
		{"tail 2", LogOptions{Tail: 2}, "\nlast\n"},
		{"tail 3 starts at the partial line", LogOptions{Tail: 3}, "long line joined\n\nlast\n"},
		{"tail 0", LogOptions{Tail: 0}, ""},
		{"tail beyond", LogOptions{Tail: 100}, "first\noops\nlong line joined\n\nlast\n"},
		{"stderr", LogOptions{Tail: -1, Stream: "stderr"}, "oops\n"},
		{"stdout tail 4", LogOptions{Tail: 4, Stream: "stdout"}, "first\nlong line joined\n\nlast\n"},
		{"since", LogOptions{Tail: -1, Since: time.Date(2016, 10, 6, 0, 17, 12, 0, time.UTC)}, "\nlast\n"},
		{"timestamps", LogOptions{Tail: 1, Timestamps: true}, "2016-10-06T00:17:14Z last\n"},
		{"partial keeps its first timestamp", LogOptions{Tail: 3, Timestamps: true, Stream: "stdout", LimitBytes: 45}, "2016-10-06T00:17:11Z long line joined\n2016-10"},
		{"limit", LogOptions{Tail: -1, LimitBytes: 8}, "first\noo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := readAll(t, path, tc.o); got != tc.want {
				t.Fatalf("got %q, want %q", got, tc.want)
			}
		})
	}
	if err := ReadLog(context.Background(), filepath.Join(t.TempDir(), "none"), LogOptions{}, &bytes.Buffer{}); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing file: err = %v", err)
	}
}

// syncBuffer is a bytes.Buffer safe for a reader and a writer goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestReadLogFollow(t *testing.T) {
	path := writeSample(t)
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var exited atomic.Bool
	out := &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- ReadLog(context.Background(), path, LogOptions{Tail: 1, Follow: true, Exited: exited.Load}, out)
	}()
	eventually(t, 5*time.Second, "the tail", func() bool { return out.String() == "last\n" })
	// A record written in two pieces is only shown once complete.
	if _, err := f.WriteString("2016-10-06T00:17:15.000000000Z stdout F new"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * followPoll)
	if got := out.String(); got != "last\n" {
		t.Fatalf("half a record was shown: %q", got)
	}
	if _, err := f.WriteString(" line\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the new line", func() bool { return out.String() == "last\nnew line\n" })
	// The container exits after writing its last words: they are shown,
	// then ReadLog returns.
	if _, err := f.WriteString("2016-10-06T00:17:16.000000000Z stderr F bye\n"); err != nil {
		t.Fatal(err)
	}
	exited.Store(true)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow did not end after the container exited")
	}
	if got := out.String(); got != "last\nnew line\nbye\n" {
		t.Fatalf("followed %q", got)
	}

	// Without Exited, cancelling the context ends a follow.
	ctx, cancel := context.WithCancel(context.Background())
	go func() { done <- ReadLog(ctx, path, LogOptions{Tail: 0, Follow: true}, &syncBuffer{}) }()
	time.Sleep(2 * followPoll)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("follow ignored cancellation")
	}
}
