package launch

import (
	"fmt"
	"net/url"
	"path/filepath"
	"time"

	"synod/internal/pki"
)

// KubeconfigFile is the admin kubeconfig Start writes under Dir with
// Options.API.
const KubeconfigFile = "kubeconfig"

func (c *Cluster) portsPerMaster() int {
	switch {
	case c.opts.Workers > 0:
		return 4 // + gossip
	case c.opts.API:
		return 3
	}
	return 2
}

// apiHost is the address the masters' APIs listen on: loopback, or the
// host bridge when workers (in their own network namespaces) must reach it.
func (c *Cluster) apiHost() string {
	if c.opts.Workers > 0 {
		return hostBridgeIP
	}
	return "127.0.0.1"
}

// pkiDir holds the cluster's CA, shared by every master.
func (c *Cluster) pkiDir() string { return filepath.Join(c.dir, "pki") }

// apiArgs are the apiserver flags of one synod master.
func (c *Cluster) apiArgs(m Master) []string {
	if c.opts.Command != nil {
		return nil // not synod (e.g. etcd): no apiserver flags
	}
	if !c.opts.API || m.APIURL == "" {
		return []string{"--secure-port", "0"}
	}
	u, err := url.Parse(m.APIURL)
	if err != nil {
		return []string{"--secure-port", "0"}
	}
	return []string{"--secure-port", u.Port(), "--pki-dir", c.pkiDir(), "--bind-address", u.Hostname()}
}

// writeKubeconfig issues an admin client certificate (group system:masters)
// from the cluster CA and writes Dir/kubeconfig pointing at the first master.
func (c *Cluster) writeKubeconfig() error {
	ms := c.Masters()
	if len(ms) == 0 || ms[0].APIURL == "" {
		return nil
	}
	ca, err := pki.EnsureCA(c.pkiDir())
	if err != nil {
		return fmt.Errorf("launch: cluster CA: %w", err)
	}
	certPEM, keyPEM, err := ca.IssueClient("admin", []string{"system:masters"}, 365*24*time.Hour)
	if err != nil {
		return fmt.Errorf("launch: admin certificate: %w", err)
	}
	if err := pki.WriteKubeconfig(c.KubeconfigPath(), ms[0].APIURL, ca.CertPEM(), certPEM, keyPEM, "admin"); err != nil {
		return fmt.Errorf("launch: %w", err)
	}
	c.writeState()
	return nil
}

// KubeconfigPath is where the admin kubeconfig is (with Options.API).
func (c *Cluster) KubeconfigPath() string { return filepath.Join(c.dir, KubeconfigFile) }
