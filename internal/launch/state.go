package launch

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// state is the content of cluster.json.
type state struct {
	Masters    []Master `json:"masters"`
	Endpoints  string   `json:"endpoints"`            // comma-separated client URLs, for --endpoints
	Kubeconfig string   `json:"kubeconfig,omitempty"` // admin kubeconfig, with Options.API
}

// ReadState reads a cluster.json written by a Cluster, for tools that reach a
// cluster they did not start (synod member --cluster-file, chaos).
func ReadState(path string) (masters []Master, endpoints []string, err error) {
	st, err := readState(path)
	if err != nil {
		return nil, nil, err
	}
	if st == nil {
		return nil, nil, fmt.Errorf("launch: %s: %w", path, os.ErrNotExist)
	}
	for _, m := range st.Masters {
		endpoints = append(endpoints, m.ClientURL)
	}
	return st.Masters, endpoints, nil
}

// readState returns nil, nil when path does not exist.
func readState(path string) (*state, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var st state
	if err := json.Unmarshal(b, &st); err != nil {
		return nil, fmt.Errorf("launch: %s: %w", path, err)
	}
	if len(st.Masters) == 0 {
		return nil, fmt.Errorf("launch: %s names no masters", path)
	}
	for _, m := range st.Masters {
		if m.Name == "" || m.ClientURL == "" || m.PeerURL == "" {
			return nil, fmt.Errorf("launch: %s: master %q lacks a name or URL", path, m.Name)
		}
	}
	return &st, nil
}

// writeState rewrites cluster.json atomically. Errors are logged: the file
// is for humans and tools, and the cluster runs without it.
func (c *Cluster) writeState() {
	c.writeMu.Lock()
	defer c.writeMu.Unlock()
	c.mu.Lock()
	st := state{Masters: c.unsafeMasters()}
	c.mu.Unlock()
	if len(st.Masters) == 0 {
		return // a Start that failed before laying out must not clobber the file
	}
	eps := make([]string, len(st.Masters))
	for i, m := range st.Masters {
		eps[i] = m.ClientURL
	}
	st.Endpoints = strings.Join(eps, ",")
	if c.opts.API {
		st.Kubeconfig = filepath.Join(c.dir, KubeconfigFile)
	}
	b, err := json.MarshalIndent(st, "", "  ")
	if err == nil {
		err = writeFileAtomic(filepath.Join(c.dir, StateFile), append(b, '\n'))
	}
	if err != nil {
		c.log.Error("cannot write cluster state", "err", err)
	}
}

// writeFileAtomic writes path via a temporary file and a rename, so readers
// never see a partial file.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// lockDir takes an exclusive flock on dir/.lock so two launchers never run
// the same cluster directory. Closing the file releases it.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("launch: %s is in use by another launcher (synod up?)", dir)
		}
		return nil, fmt.Errorf("launch: lock %s: %w", dir, err)
	}
	return f, nil
}

// requireEmptyDir refuses to lay a fresh master over existing data.
func requireEmptyDir(dir string) error {
	f, err := os.Open(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.Readdirnames(1); err != io.EOF {
		return fmt.Errorf("launch: %s is not empty but there is no %s beside it; remove it or pick another dir", dir, StateFile)
	}
	return nil
}

// checkFree reports an error if the host:port of URL u is already bound.
func checkFree(u string) error {
	pu, err := url.Parse(u)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", pu.Host)
	if err != nil {
		return fmt.Errorf("%s is not free: %w", pu.Host, err)
	}
	return ln.Close()
}
