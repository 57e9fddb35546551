package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"

	"synod/internal/launch"
	"synod/internal/pki"
)

func kubeconfigCommand() *cli.Command {
	return &cli.Command{
		Name:  "kubeconfig",
		Usage: "print a kubeconfig for a user and groups, signed by the cluster CA",
		Description: "Issues a client certificate (CN = user, O = groups) from the CA that synod up or\n" +
			"synod master made, and prints a kubeconfig that uses it. RBAC decides what the user may do;\n" +
			"group system:masters may do everything.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "user", Value: "admin", Usage: "user name (certificate CN)"},
			&cli.StringSliceFlag{Name: "group", Usage: "group (certificate O); repeat for several"},
			&cli.StringFlag{Name: "cluster-file", Usage: "cluster.json (or its dir) written by synod up: CA and server from there"},
			&cli.StringFlag{Name: "pki-dir", Usage: "CA directory (default: the cluster's pki dir)"},
			&cli.StringFlag{Name: "server", Usage: "API URL (default: the first master of --cluster-file)"},
			&cli.DurationFlag{Name: "validity", Value: 365 * 24 * time.Hour, Usage: "certificate lifetime"},
		},
		Action: runKubeconfig,
	}
}

func runKubeconfig(c *cli.Context) error {
	if c.NArg() > 0 {
		return usageError(c, "takes no arguments, got %q", c.Args().Slice())
	}
	pkiDir, server := c.String("pki-dir"), c.String("server")
	if cf := c.String("cluster-file"); cf != "" {
		path := cf
		if filepath.Ext(path) != ".json" {
			path = filepath.Join(path, launch.StateFile)
		}
		masters, _, err := launch.ReadState(path)
		if err != nil {
			return runtimeError(c, err)
		}
		if pkiDir == "" {
			pkiDir = filepath.Join(filepath.Dir(path), "pki")
		}
		if server == "" && len(masters) > 0 {
			server = masters[0].APIURL
		}
	}
	if pkiDir == "" || server == "" {
		return usageError(c, "give --cluster-file, or --pki-dir and --server")
	}
	if c.String("user") == "" {
		return usageError(c, "--user must not be empty")
	}
	ca, err := pki.EnsureCA(pkiDir)
	if err != nil {
		return runtimeError(c, err)
	}
	certPEM, keyPEM, err := ca.IssueClient(c.String("user"), c.StringSlice("group"), c.Duration("validity"))
	if err != nil {
		return runtimeError(c, err)
	}
	out, err := pki.Kubeconfig(server, ca.CertPEM(), certPEM, keyPEM, c.String("user"))
	if err != nil {
		return runtimeError(c, err)
	}
	fmt.Fprint(c.App.Writer, string(out))
	return nil
}
