package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"synod/internal/launch"
)

func upCommand() *cli.Command {
	return &cli.Command{
		Name:      "up",
		Usage:     "start a local cluster of masters on loopback and run until Ctrl-C",
		UsageText: "synod up [--masters N] [--dir DIR] [--restart] [--base-port P] [-- extra master flags...]",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "workers", Usage: "also start this many workers (synod worker), each in its own network namespace on a host bridge (needs root, a fresh --dir)"},
			&cli.IntFlag{Name: "masters", Value: 3, Usage: "number of masters: 1, 3, 5 or 7 (default: 3, or the count in DIR/cluster.json)"},
			&cli.StringFlag{Name: "dir", Value: ".cluster", Usage: "directory for data dirs, logs and cluster.json; an existing cluster there is restarted"},
			&cli.BoolFlag{Name: "restart", Usage: "restart masters that die"},
			&cli.IntFlag{Name: "base-port", Usage: "fixed ports: client P+2i, peer P+2i+1 for master i (default: free ports)"},
			&cli.StringFlag{Name: "etcd-binary", Hidden: true, Usage: "run this etcd binary in place of synod master (testing)"},
		},
		Action: runUp,
	}
}

func runUp(c *cli.Context) error {
	extra := c.Args().Slice()
	if len(extra) > 0 && !strings.HasPrefix(extra[0], "-") {
		return usageError(c, "unexpected argument %q (extra master flags go after --)", extra[0])
	}
	n := c.Int("masters")
	if !c.IsSet("masters") {
		if ms, _, err := launch.ReadState(filepath.Join(c.String("dir"), launch.StateFile)); err == nil {
			n = len(ms)
		}
	}
	switch n {
	case 1, 3, 5, 7:
	default:
		return usageError(c, "--masters %d: want 1, 3, 5 or 7 (an even count tolerates no more failures than one fewer)", n)
	}
	if w := c.Int("workers"); w < 0 || w > 200 {
		return usageError(c, "--workers %d: want 0 to 200", w)
	} else if w > 0 && os.Geteuid() != 0 {
		return usageError(c, "--workers needs root (it creates network namespaces and runs containerd)")
	}
	if p := c.Int("base-port"); p < 0 || p > 65535-3*n {
		return usageError(c, "--base-port %d out of range", p)
	}
	bin, err := os.Executable()
	if err != nil {
		return runtimeError(c, err)
	}
	log := logger(c)
	if c.IsSet("log-level") {
		extra = append([]string{"--log-level", c.String("log-level")}, extra...)
	}
	opts := launch.Options{
		Binary:    bin,
		Masters:   n,
		Workers:   c.Int("workers"),
		Dir:       c.String("dir"),
		Restart:   c.Bool("restart"),
		ExtraArgs: extra,
		BasePort:  c.Int("base-port"),
		Logger:    log,
		API:       true,
	}
	if e := c.String("etcd-binary"); e != "" {
		opts.Command = launch.EtcdCommand(e)
		opts.API = false
		opts.ExtraArgs = c.Args().Slice()
	}

	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	cl, err := launch.Start(ctx, opts)
	if err != nil {
		return runtimeError(c, err)
	}
	printUpSummary(c.App.Writer, cl)
	go func() {
		rctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		if err := cl.WaitReady(rctx); err == nil {
			log.Info("cluster ready: every master answers reads")
		} else if ctx.Err() == nil {
			log.Warn("cluster not ready after 2m; see the master logs", "err", err)
		}
	}()

	<-ctx.Done()
	stop() // a second Ctrl-C now kills synod up itself
	log.Info("stopping workers and masters")
	if err := cl.Stop(); err != nil {
		log.Error("stop", "err", err)
	}
	return nil
}

func printUpSummary(w io.Writer, cl *launch.Cluster) {
	ms := cl.Masters()
	fmt.Fprintf(w, "synod up: %d master(s) started from %s\n\n", len(ms), cl.Dir())
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPID\tCLIENT URL\tPEER URL\tAPI URL\tLOG")
	for _, m := range ms {
		api := m.APIURL
		if api == "" {
			api = "-"
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", m.Name, m.PID, m.ClientURL, m.PeerURL, api, m.LogFile)
	}
	tw.Flush()
	eps := strings.Join(cl.Endpoints(), ",")
	fmt.Fprintf(w, "\nCluster state: %s\n", cl.StateFile())
	fmt.Fprintf(w, "Reach it with:\n  ETCDCTL_API=3 etcdctl --endpoints=%s endpoint status -w table\n", eps)
	if len(ms) > 0 && ms[0].APIURL != "" {
		fmt.Fprintf(w, "  kubectl --kubeconfig %s get namespaces\n", cl.KubeconfigPath())
	}
	fmt.Fprintf(w, "  synod status --cluster-file %s\n", cl.StateFile())
	if len(ms) > 0 && ms[0].Gossip != "" {
		fmt.Fprintf(w, "  synod members --gossip-addr %s\n", ms[0].Gossip)
	}
	fmt.Fprintf(w, "\nPress Ctrl-C to stop the masters.\n")
}
