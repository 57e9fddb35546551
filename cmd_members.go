package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"synod/node/gossip"
)

// membersCommand is `synod members`: the gossip pool as one member sees it.
func membersCommand() *cli.Command {
	return &cli.Command{
		Name:  "members",
		Usage: "print the gossip pool's members (masters and workers) and their state",
		UsageText: "synod members --gossip-addr HOST:PORT[,HOST:PORT...] [--gossip-key-file FILE] [-o wide]\n\n" +
			"memberlist has no query API: synod members joins the pool for a moment as a member with\n" +
			"role \"cli\" (members neither list nor remember it), reads the first answering member's view\n" +
			"and leaves. Exit codes: 0 ok, 1 no member reachable, 2 bad flags.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "gossip-addr", Usage: "comma-separated gossip addresses of members to ask (HOST:PORT; port defaults to 7946)", EnvVars: []string{"SYNOD_GOSSIP_ADDR"}},
			&cli.StringFlag{Name: "gossip-key-file", Usage: "the pool's encryption key file (base64 key, or a JSON array of keys)", EnvVars: []string{"SYNOD_GOSSIP_KEY_FILE"}},
			&cli.StringFlag{Name: "bind-addr", Usage: "address to listen on while joined (default 127.0.0.1 for loopback members, else 0.0.0.0)"},
			&cli.DurationFlag{Name: "timeout", Value: 5 * time.Second, Usage: "how long to try reaching a member"},
			&cli.StringFlag{Name: "output", Aliases: []string{"o"}, Usage: "\"wide\" adds node name, apiserver URL and version"},
		},
		Action: runMembers,
	}
}

func runMembers(c *cli.Context) error {
	if err := exactArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	addrs, err := gossipAddrs(c.String("gossip-addr"))
	if err != nil {
		return usageError(c, "%v", err)
	}
	if o := c.String("output"); o != "" && o != "wide" {
		return usageError(c, "bad --output %q: want wide or nothing", o)
	}
	if c.Duration("timeout") <= 0 {
		return usageError(c, "--timeout must be positive")
	}
	if f := c.String("gossip-key-file"); f != "" {
		// Checked here so that a bad key is a usage error, not a failure.
		if _, err := gossip.ReadKeyFile(f); err != nil {
			return usageError(c, "%v", err)
		}
	}
	// memberlist logs every probe and push/pull at info and debug; a
	// viewer prints them only with --log-level debug.
	log := logger(c)
	if !log.Enabled(c.Context, slog.LevelDebug) {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	members, err := gossip.View(ctx, gossip.ViewConfig{Join: addrs, KeyFile: c.String("gossip-key-file"),
		BindAddr: c.String("bind-addr"), Logger: log})
	if err != nil {
		return runtimeError(c, err)
	}
	printGossipMembers(c, members, c.String("output") == "wide")
	return nil
}

// gossipAddrs splits and checks --gossip-addr.
func gossipAddrs(s string) ([]string, error) {
	if strings.TrimSpace(s) == "" {
		return nil, fmt.Errorf("--gossip-addr is required (a member's HOST:PORT, e.g. 127.0.0.1:%d)", gossip.DefaultPort)
	}
	var out []string
	for _, a := range strings.Split(s, ",") {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a)
		if err != nil && !strings.Contains(a, ":") {
			host, port, err = a, strconv.Itoa(gossip.DefaultPort), nil // HOST alone: the default port
		}
		if p, perr := strconv.Atoi(port); err != nil || perr != nil || p < 1 || p > 65535 || host == "" {
			return nil, fmt.Errorf("bad --gossip-addr %q: want HOST:PORT", a)
		}
		out = append(out, net.JoinHostPort(host, port))
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("--gossip-addr is empty")
	}
	return out, nil
}

func printGossipMembers(c *cli.Context, members []gossip.Member, wide bool) {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 3, ' ', 0)
	if wide {
		fmt.Fprintln(tw, "NAME\tADDRESS\tROLE\tSTATE\tNODE\tAPISERVER\tVERSION")
	} else {
		fmt.Fprintln(tw, "NAME\tADDRESS\tROLE\tSTATE")
	}
	for _, m := range members {
		if wide {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.Name, m.Address(), m.Role, m.State,
				orNone(m.NodeName), orNone(m.APIServerURL), orNone(m.Version))
		} else {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", m.Name, m.Address(), m.Role, m.State)
		}
	}
	tw.Flush()
}

func orNone(s string) string {
	if s == "" {
		return "<none>"
	}
	return s
}
