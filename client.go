package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"synod/internal/launch"
)

// clientFlags are shared by every command that talks to a cluster; names and
// environment variables follow etcdctl's.
func clientFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "endpoints", Value: "127.0.0.1:2379", EnvVars: []string{"ETCDCTL_ENDPOINTS"}, Usage: "comma-separated client URLs"},
		&cli.StringFlag{Name: "cluster-file", Usage: "take the endpoints from a cluster.json written by synod up (or its directory)"},
		&cli.DurationFlag{Name: "dial-timeout", Value: 2 * time.Second, EnvVars: []string{"ETCDCTL_DIAL_TIMEOUT"}, Usage: "timeout to connect to an endpoint"},
		&cli.DurationFlag{Name: "command-timeout", Value: 5 * time.Second, EnvVars: []string{"ETCDCTL_COMMAND_TIMEOUT"}, Usage: "timeout for one request"},
		&cli.StringFlag{Name: "cacert", EnvVars: []string{"ETCDCTL_CACERT"}, Usage: "verify TLS servers with this CA bundle"},
		&cli.StringFlag{Name: "cert", EnvVars: []string{"ETCDCTL_CERT"}, Usage: "TLS client certificate"},
		&cli.StringFlag{Name: "key", EnvVars: []string{"ETCDCTL_KEY"}, Usage: "TLS client key"},
	}
}

// endpoints returns the endpoints named by --cluster-file or --endpoints.
// A bad flag is a usage error; an unreadable cluster file is a runtime one.
func endpoints(c *cli.Context) ([]string, error) {
	if f := c.String("cluster-file"); f != "" {
		// $ETCDCTL_ENDPOINTS yields to an explicit --cluster-file.
		if c.IsSet("endpoints") && c.String("endpoints") != os.Getenv("ETCDCTL_ENDPOINTS") {
			return nil, usageError(c, "give --endpoints or --cluster-file, not both")
		}
		if st, err := os.Stat(f); err == nil && st.IsDir() {
			f = filepath.Join(f, launch.StateFile)
		}
		_, eps, err := launch.ReadState(f)
		if err != nil {
			return nil, runtimeError(c, err)
		}
		return eps, nil
	}
	var eps []string
	for _, e := range strings.Split(c.String("endpoints"), ",") {
		if e = strings.TrimSpace(e); e != "" {
			eps = append(eps, e)
		}
	}
	if len(eps) == 0 {
		return nil, usageError(c, "--endpoints is empty")
	}
	return eps, nil
}

// newClient connects to eps with the client flags. clientv3 dials lazily, so
// an unreachable endpoint shows up as the first request's error.
func newClient(c *cli.Context, eps []string) (*clientv3.Client, error) {
	cfg := clientv3.Config{
		Endpoints:   eps,
		DialTimeout: c.Duration("dial-timeout"),
		Logger:      zap.NewNop(),
	}
	cert, key, ca := c.String("cert"), c.String("key"), c.String("cacert")
	if (cert == "") != (key == "") {
		return nil, usageError(c, "--cert and --key go together")
	}
	if cert != "" || ca != "" || anyHTTPS(eps) {
		tc, err := clientTLS(cert, key, ca)
		if err != nil {
			return nil, usageError(c, "%v", err)
		}
		cfg.TLS = tc
	}
	ec, err := clientv3.New(cfg)
	if err != nil {
		return nil, runtimeError(c, err)
	}
	return ec, nil
}

// connect is endpoints plus newClient.
func connect(c *cli.Context) (*clientv3.Client, []string, error) {
	eps, err := endpoints(c)
	if err != nil {
		return nil, nil, err
	}
	ec, err := newClient(c, eps)
	return ec, eps, err
}

// commandContext bounds one request by --command-timeout.
func commandContext(c *cli.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(c.Context, c.Duration("command-timeout"))
}

// requestError wraps a failed request as a runtime error naming the endpoints.
func requestError(c *cli.Context, eps []string, err error) error {
	return runtimeError(c, fmt.Errorf("%s: %w", strings.Join(eps, ","), err))
}
