package launch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"time"
)

// errPortRace marks a master that died at birth because its port was taken
// between pickPorts and the master's bind.
var errPortRace = errors.New("launch: port taken before the master could bind it")

// pickPorts returns n distinct free loopback ports. It holds all n listeners
// open at once, so the ports differ from each other, then closes them; another
// process may still take one before a master binds it (see errPortRace).
// Non-const so tests can force a race.
var pickPorts = func(n int) ([]int, error) {
	lns := make([]net.Listener, 0, n)
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("launch: pick a free port: %w", err)
		}
		lns = append(lns, ln)
		ports[i] = ln.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// ports returns client and peer ports for every master, interleaved:
// [client0, peer0, client1, peer1, ...].
func (c *Cluster) ports() ([]int, error) {
	n := c.portsPerMaster() * c.opts.Masters
	if c.opts.BasePort == 0 {
		return pickPorts(n)
	}
	ports := make([]int, n)
	for i := range ports {
		ports[i] = c.opts.BasePort + i
		if ports[i] > 65535 {
			return nil, fmt.Errorf("launch: base port %d leaves no room for %d masters", c.opts.BasePort, c.opts.Masters)
		}
		if err := checkFree(fmt.Sprintf("http://127.0.0.1:%d", ports[i])); err != nil {
			return nil, fmt.Errorf("launch: %w", err)
		}
	}
	return ports, nil
}

// waitListening waits until every master accepts TCP connections on its client
// and peer ports, or has died (an error), or StartTimeout passes (a warning:
// the master is alive, only slow). A master killed by a taken port yields
// errPortRace when fresh, so the caller can retry on new ports.
func (c *Cluster) waitListening(ctx context.Context, fresh bool) error {
	c.mu.Lock()
	ms := c.unsafeMasters()
	procs := make([]*process, len(c.members))
	for i, m := range c.members {
		procs[i] = m.proc
	}
	c.mu.Unlock()

	ctx, cancel := context.WithTimeout(ctx, c.opts.StartTimeout)
	defer cancel()
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i := range ms {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.waitOneListening(ctx, ms[i], procs[i], fresh)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (c *Cluster) waitOneListening(ctx context.Context, m Master, p *process, fresh bool) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-p.done:
			tail := logTail(m.LogFile, 12)
			if fresh && strings.Contains(tail, "address already in use") {
				return fmt.Errorf("%w: %s: %s", errPortRace, m.Name, lastLine(tail))
			}
			return fmt.Errorf("launch: master %s exited during startup (%s); last lines of %s:\n%s",
				m.Name, exitString(p.err), m.LogFile, tail)
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) && !isDone(p) {
				c.log.Warn("master alive but not listening yet; continuing", "name", m.Name, "waited", c.opts.StartTimeout)
				return nil
			}
			return ctx.Err()
		case <-tick.C:
			if dialable(m.ClientURL) && dialable(m.PeerURL) && !isDone(p) {
				return nil
			}
		}
	}
}

func dialable(u string) bool {
	pu, err := url.Parse(u)
	if err != nil {
		return false
	}
	conn, err := net.DialTimeout("tcp", pu.Host, 200*time.Millisecond)
	if err != nil {
		return false
	}
	conn.Close()
	return true
}

// logTail returns up to n last lines of the file at path, from its last
// launch marker on (earlier runs are not this run's story).
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	s := string(b)
	if i := strings.LastIndex(s, "--- launch "); i >= 0 {
		s = s[i:]
		if j := strings.IndexByte(s, '\n'); j >= 0 {
			s = s[j+1:]
		}
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
