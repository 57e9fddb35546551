package chaos

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Inventory is what the harness needs from an Ansible inventory written for
// site.yml: the masters (group [masters], in order) and how to reach them.
type Inventory struct {
	Path    string
	Masters []InventoryHost
	// User and KeyFile are ansible_user and ansible_ssh_private_key_file
	// of [all:vars] (or the host's own line).
	User, KeyFile string
	// Cluster is synod_cluster_name (default "synod"): the control host
	// keeps the cluster's PKI in synod-<Cluster>/ next to the inventory.
	Cluster string
}

// InventoryHost is one host line.
type InventoryHost struct {
	Name, Address string // inventory name; synod_address or ansible_host
	User, KeyFile string // per-host overrides; "" = the inventory's
}

// ParseInventory reads an INI inventory (the layout the sample and testbed
// inventories use: [masters], [workers], [all:vars]; one host a line with
// key=value variables). YAML inventories and group_vars are not read.
func ParseInventory(path string) (*Inventory, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("chaos: inventory: %w", err)
	}
	defer f.Close()
	inv := &Inventory{Path: path, Cluster: "synod", User: "root"}
	section := ""
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]") {
			section = strings.Trim(line, "[]")
			continue
		}
		fields := splitInventoryLine(line)
		vars := map[string]string{}
		for _, kv := range fields {
			if k, v, ok := strings.Cut(kv, "="); ok {
				vars[k] = strings.Trim(v, `'"`)
			}
		}
		switch section {
		case "masters":
			h := InventoryHost{Name: fields[0], Address: fields[0], User: vars["ansible_user"], KeyFile: vars["ansible_ssh_private_key_file"]}
			if a := vars["ansible_host"]; a != "" {
				h.Address = a
			}
			if a := vars["synod_address"]; a != "" {
				h.Address = a
			}
			inv.Masters = append(inv.Masters, h)
		case "all:vars":
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("chaos: inventory %s:%d: want key=value in [all:vars]", path, n)
			}
			k, v = strings.TrimSpace(k), strings.Trim(strings.TrimSpace(v), `'"`)
			switch k {
			case "ansible_user":
				inv.User = v
			case "ansible_ssh_private_key_file":
				inv.KeyFile = v
			case "synod_cluster_name":
				inv.Cluster = v
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("chaos: inventory: %w", err)
	}
	if len(inv.Masters) == 0 {
		return nil, fmt.Errorf("chaos: inventory %s has no hosts in [masters]", path)
	}
	return inv, nil
}

// splitInventoryLine splits at spaces outside quotes.
func splitInventoryLine(line string) []string {
	var out []string
	var cur strings.Builder
	quote := rune(0)
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			}
			cur.WriteRune(r)
		case r == '\'' || r == '"':
			quote = r
			cur.WriteRune(r)
		case r == ' ' || r == '\t':
			if cur.Len() > 0 {
				out = append(out, cur.String())
				cur.Reset()
			}
		default:
			cur.WriteRune(r)
		}
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// LocalDir is where site.yml keeps the cluster's PKI and admin kubeconfig
// on the control host (synod_local_dir's default).
func (inv *Inventory) LocalDir() string {
	return filepath.Join(filepath.Dir(inv.Path), "synod-"+inv.Cluster)
}

// Ports of a deployed master (synod_client_port, synod_api_port defaults).
const (
	remoteClientPort = 2379
	remoteAPIPort    = 6443
)

// RemoteCluster is a cluster deployed by site.yml, reached from the control
// host: etcd and Kubernetes clients with the PKI site.yml made, SSH for the
// masters' services and logs.
type RemoteCluster struct {
	inv  *Inventory
	log  *slog.Logger
	tls  *tls.Config
	etcd []*clientv3.Client // one per master, pinned to its endpoint
}

// NewRemoteCluster builds the clients of inv's cluster. It does not wait
// for the cluster: WaitHealthy does.
func NewRemoteCluster(inv *Inventory, log *slog.Logger) (_ *RemoteCluster, retErr error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	pkiDir := filepath.Join(inv.LocalDir(), "pki")
	caPEM, err := os.ReadFile(filepath.Join(pkiDir, "ca.crt"))
	if err != nil {
		return nil, fmt.Errorf("chaos: the cluster CA site.yml made (run site.yml first): %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("chaos: no certificate in %s", filepath.Join(pkiDir, "ca.crt"))
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(pkiDir, "client.crt"), filepath.Join(pkiDir, "client.key"))
	if err != nil {
		return nil, fmt.Errorf("chaos: the masters' client certificate: %w", err)
	}
	if _, err := os.Stat(filepath.Join(inv.LocalDir(), "admin.kubeconfig")); err != nil {
		return nil, fmt.Errorf("chaos: the admin kubeconfig site.yml fetched: %w", err)
	}
	c := &RemoteCluster{inv: inv, log: log, tls: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}}
	defer func() {
		if retErr != nil {
			c.Close()
		}
	}()
	for _, ep := range c.EtcdEndpoints() {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second, TLS: c.tls, Logger: zap.NewNop()})
		if err != nil {
			return nil, fmt.Errorf("chaos: etcd client for %s: %w", ep, err)
		}
		c.etcd = append(c.etcd, cli)
	}
	return c, nil
}

// Close closes the clients.
func (c *RemoteCluster) Close() {
	for _, cli := range c.etcd {
		cli.Close()
	}
}

// TLS is the etcd clients' TLS config.
func (c *RemoteCluster) TLS() *tls.Config { return c.tls }

// Size is the number of masters.
func (c *RemoteCluster) Size() int { return len(c.inv.Masters) }

// Name is master i's inventory name.
func (c *RemoteCluster) Name(i int) string { return c.inv.Masters[i].Name }

// EtcdEndpoints are the masters' etcd client URLs.
func (c *RemoteCluster) EtcdEndpoints() []string {
	out := make([]string, len(c.inv.Masters))
	for i, m := range c.inv.Masters {
		out[i] = fmt.Sprintf("https://%s:%d", m.Address, remoteClientPort)
	}
	return out
}

// KubeServers are the masters' Kubernetes API URLs.
func (c *RemoteCluster) KubeServers() []string {
	out := make([]string, len(c.inv.Masters))
	for i, m := range c.inv.Masters {
		out[i] = fmt.Sprintf("https://%s:%d", m.Address, remoteAPIPort)
	}
	return out
}

// KubeconfigPath is the admin kubeconfig site.yml fetched.
func (c *RemoteCluster) KubeconfigPath() string {
	return filepath.Join(c.inv.LocalDir(), "admin.kubeconfig")
}

// SSH runs a shell command on master i as the inventory's user, within
// timeout, and returns its combined output.
func (c *RemoteCluster) SSH(ctx context.Context, i int, timeout time.Duration, command string) (string, error) {
	m := c.inv.Masters[i]
	user, key := c.inv.User, c.inv.KeyFile
	if m.User != "" {
		user = m.User
	}
	if m.KeyFile != "" {
		key = m.KeyFile
	}
	args := []string{"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
		"-o", "ConnectTimeout=3", "-o", "LogLevel=ERROR"}
	if key != "" {
		args = append(args, "-i", key)
	}
	args = append(args, user+"@"+m.Address, command)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ssh", args...)
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if err != nil {
		return out.String(), fmt.Errorf("chaos: ssh %s %q: %w: %s", m.Name, command, err, strings.TrimSpace(out.String()))
	}
	return out.String(), nil
}

// Leader returns the index of the raft leader as most answering masters
// see it.
func (c *RemoteCluster) Leader(ctx context.Context) (int, error) {
	ids := make([]uint64, c.Size())
	leaders := make([]uint64, c.Size())
	var wg sync.WaitGroup
	for i, ep := range c.EtcdEndpoints() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if st, err := c.etcd[i].Status(sctx, ep); err == nil {
				ids[i], leaders[i] = st.Header.MemberId, st.Leader
			}
		}()
	}
	wg.Wait()
	votes := map[uint64]int{}
	for _, l := range leaders {
		if l != 0 {
			votes[l]++
		}
	}
	var best uint64
	for id, n := range votes {
		if n > votes[best] || (n == votes[best] && id < best) {
			best = id
		}
	}
	for i, id := range ids {
		if best != 0 && id == best {
			return i, nil
		}
	}
	return -1, errors.New("chaos: no master reports a leader that answers")
}

// Healthy reports nil when every master answers a linearizable read and
// all agree on one leader.
func (c *RemoteCluster) Healthy(ctx context.Context) error {
	return etcdHealthy(ctx, c.etcd, c.EtcdEndpoints(), c.Name, nil)
}

// WaitHealthy polls Healthy until it holds or timeout passes.
func (c *RemoteCluster) WaitHealthy(ctx context.Context, timeout time.Duration) error {
	return waitHealthy(ctx, timeout, 500*time.Millisecond, c.Healthy)
}

// FetchLogs writes each master's synod-master journal since since (all
// boots in between: a stopped machine's earlier boot has the terms before
// it) to dir/<name>.log and returns the paths. journalctl -o cat gives the
// master's own slog lines, as the checks read them from a local log;
// systemd's own lines among them have no fields and are skipped. Only the
// run's part is fetched: an earlier part may have process deaths (earlier
// runs, an operator) that no fault of this run explains, so terms would
// seem to last until the next start. A term begun before since is not seen.
func (c *RemoteCluster) FetchLogs(ctx context.Context, dir string, since time.Time) ([]string, error) {
	paths := make([]string, c.Size())
	var errs []error
	for i := range c.Size() {
		out, err := c.SSH(ctx, i, 2*time.Minute, fmt.Sprintf("journalctl --no-pager -u synod-master -o cat --since @%d", since.Unix()))
		if err != nil {
			errs = append(errs, err)
		}
		paths[i] = filepath.Join(dir, c.Name(i)+".log")
		if werr := os.WriteFile(paths[i], []byte(out), 0o644); werr != nil {
			errs = append(errs, fmt.Errorf("chaos: %w", werr))
		}
	}
	return paths, errors.Join(errs...)
}
