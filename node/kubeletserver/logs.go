package kubeletserver

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"time"

	"synod/node/runtime"
)

// serveLogs streams a container's log as plain text, flushing as lines
// arrive so that `kubectl logs -f` sees them at once.
func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request, ns, pod, container string) {
	q := r.URL.Query()
	opts := runtime.LogOptions{Tail: -1}
	var err error
	boolParam := func(name string) bool {
		v, perr := strconv.ParseBool(q.Get(name))
		if q.Get(name) != "" && perr != nil && err == nil {
			err = fmt.Errorf("invalid %s %q", name, q.Get(name))
		}
		return v
	}
	intParam := func(name string) int64 {
		if q.Get(name) == "" {
			return 0
		}
		v, perr := strconv.ParseInt(q.Get(name), 10, 64)
		if (perr != nil || v < 0) && err == nil {
			err = fmt.Errorf("invalid %s %q", name, q.Get(name))
		}
		return v
	}
	opts.Follow = boolParam("follow")
	previous := boolParam("previous")
	opts.Timestamps = boolParam("timestamps")
	if q.Get("tailLines") != "" {
		opts.Tail = intParam("tailLines")
	}
	opts.LimitBytes = intParam("limitBytes")
	if secs := intParam("sinceSeconds"); secs > 0 {
		opts.Since = time.Now().Add(-time.Duration(secs) * time.Second)
	}
	if st := q.Get("sinceTime"); st != "" {
		t, perr := time.Parse(time.RFC3339, st)
		if perr != nil && err == nil {
			err = fmt.Errorf("invalid sinceTime %q", st)
		}
		opts.Since = t
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	c, ok := s.find(w, r, ns, pod, container, previous)
	if !ok {
		return
	}
	if c.LogPath == "" {
		http.Error(w, fmt.Sprintf("container %q in pod %q has no log", container, pod), http.StatusNotFound)
		return
	}
	ctx := r.Context()
	opts.Exited = func() bool { return s.cfg.Runtime.LogDone(ctx, c.ID) }
	w.Header().Set("Content-Type", "text/plain")
	fw := &flushWriter{w: w, rc: http.NewResponseController(w)}
	if err := runtime.ReadLog(ctx, c.LogPath, opts, fw); err != nil {
		switch {
		case fw.wrote:
			// Headers are out; the client sees the stream end early.
			s.log.Debug("log stream ended", "pod", ns+"/"+pod, "container", container, "err", err)
		case errors.Is(err, os.ErrNotExist):
			http.Error(w, fmt.Sprintf("log of container %q in pod %q not found", container, pod), http.StatusNotFound)
		case ctx.Err() != nil:
		default:
			http.Error(w, err.Error(), http.StatusInternalServerError)
		}
		return
	}
	if !fw.wrote {
		w.WriteHeader(http.StatusOK)
	}
}

// flushWriter flushes after every write.
type flushWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	wrote bool
}

func (f *flushWriter) Write(p []byte) (int, error) {
	f.wrote = true
	n, err := f.w.Write(p)
	if err == nil {
		err = f.rc.Flush()
	}
	return n, err
}
