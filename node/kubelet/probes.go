package kubelet

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	v1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// probeSet runs one container attempt's probes. The startup probe gates
// the other two; readiness starts false; a liveness (or startup) probe
// that fails failureThreshold times in a row marks the container to kill.
type probeSet struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	started  bool
	ready    bool
	failProb string // "liveness" or "startup" when the container must be killed
	failMsg  string
}

func (p *probeSet) status() (started, ready bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.started, p.ready
}

// failed is the probe that condemned the container, if any.
func (p *probeSet) failed() (probe, msg string) {
	if p == nil {
		return "", ""
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failProb, p.failMsg
}

func (r *containerRecord) stopProbes() {
	if r.probes != nil {
		r.probes.cancel()
		r.probes = nil
	}
}

// ensureProbes starts the probes of r's running attempt once.
func (w *podWorker) ensureProbes(c v1.Container, r *containerRecord) {
	if r.probes != nil || r.cur == nil || r.init {
		return
	}
	ctx, cancel := context.WithCancel(w.ctx)
	p := &probeSet{cancel: cancel, started: c.StartupProbe == nil, ready: c.ReadinessProbe == nil}
	r.probes = p
	id, podIP, pod := r.cur.id, w.podIP, w.pod
	run := func(kind string, probe *v1.Probe) {
		if probe == nil {
			return
		}
		w.k.wg.Add(1)
		go func() {
			defer w.k.wg.Done()
			w.probeLoop(ctx, p, pod, kind, probe, c, id, podIP)
		}()
	}
	run("startup", c.StartupProbe)
	run("liveness", c.LivenessProbe)
	run("readiness", c.ReadinessProbe)
}

func probeDefaults(p *v1.Probe, kind string) (delay, period, timeout time.Duration, success, failure int) {
	delay = time.Duration(p.InitialDelaySeconds) * time.Second
	period = time.Duration(max(p.PeriodSeconds, 1)) * time.Second
	if p.PeriodSeconds == 0 {
		period = 10 * time.Second
	}
	timeout = time.Duration(max(p.TimeoutSeconds, 1)) * time.Second
	success, failure = int(p.SuccessThreshold), int(p.FailureThreshold)
	if success <= 0 || kind != "readiness" {
		success = 1
	}
	if failure <= 0 {
		failure = 3
	}
	return
}

// probeLoop runs one probe every period, after the initial delay, and
// turns results into the probeSet's state with the thresholds.
func (w *podWorker) probeLoop(ctx context.Context, p *probeSet, pod *v1.Pod, kind string, probe *v1.Probe, c v1.Container, id, podIP string) {
	delay, period, timeout, successTh, failureTh := probeDefaults(probe, kind)
	select {
	case <-ctx.Done():
		return
	case <-time.After(delay):
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	successes, failures := 0, 0
	for {
		p.mu.Lock()
		started := p.started
		p.mu.Unlock()
		if kind == "startup" && started {
			return
		}
		if kind == "startup" || started {
			ok, msg := w.runProbe(ctx, probe, timeout, c, id, podIP)
			if ctx.Err() != nil {
				return
			}
			w.k.metrics.probes.WithLabelValues(kind, map[bool]string{true: "success", false: "failure"}[ok]).Inc()
			changed := false
			if ok {
				successes, failures = successes+1, 0
				if successes >= successTh {
					p.mu.Lock()
					switch kind {
					case "readiness":
						changed, p.ready = !p.ready, true
					case "startup":
						changed, p.started = !p.started, true
					}
					p.mu.Unlock()
				}
			} else {
				failures, successes = failures+1, 0
				title := strings.ToUpper(kind[:1]) + kind[1:]
				w.k.recorder.Eventf(pod, v1.EventTypeWarning, "Unhealthy", "%s probe failed: %s", title, msg)
				if failures >= failureTh {
					p.mu.Lock()
					switch kind {
					case "readiness":
						changed, p.ready = p.ready, false
					default:
						changed = p.failProb == ""
						p.failProb, p.failMsg = kind, msg
					}
					p.mu.Unlock()
				}
			}
			if changed {
				w.kickNow()
				if !ok && kind != "readiness" {
					return // the container is being killed
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// runProbe runs one probe with its timeout; msg says why it failed.
func (w *podWorker) runProbe(ctx context.Context, p *v1.Probe, timeout time.Duration, c v1.Container, id, podIP string) (ok bool, msg string) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	switch {
	case p.Exec != nil:
		// stdout and stderr are copied concurrently into one buffer.
		var out lockedBuffer
		code, err := w.k.rt.Exec(ctx, id, p.Exec.Command, nil, &out, &out, false)
		if ctx.Err() == context.DeadlineExceeded {
			return false, fmt.Sprintf("command %q timed out", strings.Join(p.Exec.Command, " "))
		}
		if err != nil {
			return false, err.Error()
		}
		if code != 0 {
			return false, strings.TrimSpace(out.String())
		}
		return true, ""
	case p.HTTPGet != nil:
		return w.httpProbe(ctx, p.HTTPGet, c, podIP)
	case p.TCPSocket != nil:
		port, err := resolvePort(p.TCPSocket.Port, c)
		if err != nil {
			return false, err.Error()
		}
		host := p.TCPSocket.Host
		if host == "" {
			host = podIP
		}
		conn, err := w.k.cfg.ProbeDialer(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(port)))
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	}
	// gRPC probes are not implemented: treat as passing rather than
	// killing healthy containers.
	return true, ""
}

func (w *podWorker) httpProbe(ctx context.Context, g *v1.HTTPGetAction, c v1.Container, podIP string) (bool, string) {
	port, err := resolvePort(g.Port, c)
	if err != nil {
		return false, err.Error()
	}
	host := g.Host
	if host == "" {
		host = podIP
	}
	scheme := strings.ToLower(string(g.Scheme))
	if scheme == "" {
		scheme = "http"
	}
	path := g.Path
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	u := &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, strconv.Itoa(port))}
	if p, q, ok := strings.Cut(path, "?"); ok {
		u.Path, u.RawQuery = p, q
	} else {
		u.Path = path
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", "kube-probe/1.32")
	req.Header.Set("Accept", "*/*")
	for _, h := range g.HTTPHeaders {
		if strings.EqualFold(h.Name, "Host") {
			req.Host = h.Value
			continue
		}
		req.Header.Add(h.Name, h.Value)
	}
	client := &http.Client{
		Transport: &http.Transport{
			DialContext:       w.k.cfg.ProbeDialer,
			TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // as the kubelet's prober
			DisableKeepAlives: true,
		},
		// The kubelet follows redirects only to the same host; not
		// following any is the conservative subset.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 10<<10))
	if resp.StatusCode >= 200 && resp.StatusCode < 400 {
		return true, ""
	}
	return false, fmt.Sprintf("HTTP probe failed with statuscode: %d", resp.StatusCode)
}

// resolvePort turns a probe port (number or container port name) into a
// number.
func resolvePort(p intstr.IntOrString, c v1.Container) (int, error) {
	if p.Type == intstr.Int {
		if p.IntVal <= 0 || p.IntVal > 65535 {
			return 0, fmt.Errorf("invalid port number: %d", p.IntVal)
		}
		return int(p.IntVal), nil
	}
	for _, cp := range c.Ports {
		if cp.Name == p.StrVal {
			return int(cp.ContainerPort), nil
		}
	}
	if n, err := strconv.Atoi(p.StrVal); err == nil {
		return n, nil
	}
	return 0, fmt.Errorf("couldn't find port: %v in %v", p.StrVal, c.Name)
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf.Len() > 10<<10 {
		return len(p), nil // the kubelet keeps only the start of probe output
	}
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
