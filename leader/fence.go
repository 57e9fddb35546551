package leader

import (
	"fmt"
	"net/http"
)

// Fence wraps a component's HTTP transport: reads always pass, writes pass
// only while active() is true. With Elector.Active it stops a component from
// writing once its lease may have been taken over, even if the goroutine
// doing the write has not yet noticed that its context was cancelled.
//
// Use it with rest.Config.Wrap.
func Fence(active func() bool) func(http.RoundTripper) http.RoundTripper {
	return func(rt http.RoundTripper) http.RoundTripper {
		return fenceTransport{next: rt, active: active}
	}
}

type fenceTransport struct {
	next   http.RoundTripper
	active func() bool
}

// ErrNotLeader is returned for a write attempted without a fresh lease.
var ErrNotLeader = fmt.Errorf("leader: not the active instance (lease not held or not renewed in time); write refused")

func (f fenceTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	switch req.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
	default:
		if !f.active() {
			return nil, ErrNotLeader
		}
	}
	return f.next.RoundTrip(req)
}
