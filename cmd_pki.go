package main

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"synod/internal/pki"
)

// pkiCommand makes a cluster's certificates ahead of time, on an operator's
// machine: deployment tools (ansible/site.yml) create the CA, every
// master's and worker's certificate and the gossip key once, keep them, and
// copy them out, so the masters never have to agree on a CA at startup.
// Outputs are never overwritten (exit 1 if one exists): a deployment guards
// each call with "create if missing", and regenerating a certificate by
// accident would break a running cluster.
func pkiCommand() *cli.Command {
	dirFlag := &cli.StringFlag{Name: "dir", Usage: "CA directory (ca.crt, ca.key; the CA is created there if missing) (required)"}
	validity := &cli.DurationFlag{Name: "validity", Value: pki.DefaultValidity, Usage: "certificate lifetime"}
	return &cli.Command{
		Name:   "pki",
		Usage:  "create a cluster CA, certificates, kubeconfigs and the gossip key ahead of deployment",
		Action: requireSubcommand,
		Subcommands: []*cli.Command{
			{
				Name:   "ca",
				Usage:  "create the CA in --dir unless it exists (prints the CA certificate's path)",
				Flags:  []cli.Flag{dirFlag},
				Action: pkiCA,
			},
			{
				Name:  "cert",
				Usage: "issue a certificate and key signed by the CA in --dir",
				Description: "--kind serving: TLS server (apiserver, etcd client port); peer: server and client\n" +
					"(raft peer mutual TLS); client: CN --user, O --group (Kubernetes identity).",
				Flags: []cli.Flag{dirFlag, validity,
					&cli.StringFlag{Name: "kind", Usage: "serving, peer or client (required)"},
					&cli.StringSliceFlag{Name: "host", Usage: "SAN (IP or DNS name) for serving and peer certificates; repeat"},
					&cli.StringFlag{Name: "user", Usage: "client certificate user (CN)"},
					&cli.StringSliceFlag{Name: "group", Usage: "client certificate group (O); repeat"},
					&cli.StringFlag{Name: "cert-out", Usage: "certificate file to write (required)"},
					&cli.StringFlag{Name: "key-out", Usage: "key file to write, mode 0600 (required)"},
				},
				Action: pkiCert,
			},
			{
				Name:  "kubeconfig",
				Usage: "write a kubeconfig with a client certificate for --user signed by the CA in --dir",
				Flags: []cli.Flag{dirFlag, validity,
					&cli.StringFlag{Name: "server", Usage: "API URL, https://HOST:PORT (required)"},
					&cli.StringFlag{Name: "user", Value: "admin", Usage: "user name (certificate CN)"},
					&cli.StringSliceFlag{Name: "group", Usage: "group (certificate O); repeat"},
					&cli.StringFlag{Name: "out", Usage: "kubeconfig file to write, mode 0600 (required)"},
				},
				Action: pkiKubeconfig,
			},
			{
				Name:   "gossip-key",
				Usage:  "write a new random gossip encryption key (base64, 32 bytes) to --out",
				Flags:  []cli.Flag{&cli.StringFlag{Name: "out", Usage: "key file to write, mode 0600 (required)"}},
				Action: pkiGossipKey,
			},
		},
	}
}

// requireFlags reports the first of names that was not given as a usage
// error (exit 2), as every synod command does for bad usage.
func requireFlags(c *cli.Context, names ...string) error {
	for _, n := range names {
		if c.String(n) == "" {
			return usageError(c, "--%s is required", n)
		}
	}
	return nil
}

func pkiCA(c *cli.Context) error {
	if err := exactArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	if err := requireFlags(c, "dir"); err != nil {
		return err
	}
	if _, err := pki.EnsureCA(c.String("dir")); err != nil {
		return runtimeError(c, err)
	}
	fmt.Fprintln(c.App.Writer, filepath.Join(c.String("dir"), pki.CACertFile))
	return nil
}

func pkiCert(c *cli.Context) error {
	if err := exactArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	if err := requireFlags(c, "dir", "kind", "cert-out", "key-out"); err != nil {
		return err
	}
	kind, hosts := c.String("kind"), c.StringSlice("host")
	switch kind {
	case "serving", "peer":
		if c.String("user") != "" || len(c.StringSlice("group")) > 0 {
			return usageError(c, "--user and --group are for --kind client")
		}
	case "client":
		if c.String("user") == "" {
			return usageError(c, "--kind client needs --user")
		}
		if len(hosts) > 0 {
			return usageError(c, "--host is for --kind serving or peer")
		}
	default:
		return usageError(c, "--kind must be serving, peer or client, got %q", kind)
	}
	certOut, keyOut := c.String("cert-out"), c.String("key-out")
	if err := refuseExisting(certOut, keyOut); err != nil {
		return runtimeError(c, err)
	}
	ca, err := pki.EnsureCA(c.String("dir"))
	if err != nil {
		return runtimeError(c, err)
	}
	var certPEM, keyPEM []byte
	switch kind {
	case "serving":
		certPEM, keyPEM, err = ca.IssueServing(hosts, c.Duration("validity"))
	case "peer":
		certPEM, keyPEM, err = ca.IssuePeer(hosts, c.Duration("validity"))
	default:
		certPEM, keyPEM, err = ca.IssueClient(c.String("user"), c.StringSlice("group"), c.Duration("validity"))
	}
	if err != nil {
		return runtimeError(c, err)
	}
	// The key first: a crash in between leaves no certificate without its key.
	if err := writeNew(keyOut, keyPEM, 0o600); err != nil {
		return runtimeError(c, err)
	}
	if err := writeNew(certOut, certPEM, 0o644); err != nil {
		return runtimeError(c, err)
	}
	return nil
}

func pkiKubeconfig(c *cli.Context) error {
	if err := exactArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	if err := requireFlags(c, "dir", "server", "out"); err != nil {
		return err
	}
	if c.String("user") == "" {
		return usageError(c, "--user must not be empty")
	}
	out := c.String("out")
	if err := refuseExisting(out); err != nil {
		return runtimeError(c, err)
	}
	ca, err := pki.EnsureCA(c.String("dir"))
	if err != nil {
		return runtimeError(c, err)
	}
	certPEM, keyPEM, err := ca.IssueClient(c.String("user"), c.StringSlice("group"), c.Duration("validity"))
	if err != nil {
		return runtimeError(c, err)
	}
	data, err := pki.Kubeconfig(c.String("server"), ca.CertPEM(), certPEM, keyPEM, c.String("user"))
	if err != nil {
		return runtimeError(c, err)
	}
	if err := writeNew(out, data, 0o600); err != nil {
		return runtimeError(c, err)
	}
	return nil
}

func pkiGossipKey(c *cli.Context) error {
	if err := exactArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	if err := requireFlags(c, "out"); err != nil {
		return err
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return runtimeError(c, fmt.Errorf("gossip key: %w", err))
	}
	if err := writeNew(c.String("out"), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		return runtimeError(c, err)
	}
	return nil
}

// refuseExisting fails if any of paths exists, before anything is issued.
func refuseExisting(paths ...string) error {
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return fmt.Errorf("%s exists; remove it to issue a new one", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check %s: %w", p, err)
		}
	}
	return nil
}

// writeNew creates path with perm, failing if it exists (O_EXCL), so two
// concurrent runs never both think they wrote it.
func writeNew(path string, data []byte, perm os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("create dir of %s: %w", path, err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
