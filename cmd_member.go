package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func memberCommand() *cli.Command {
	return &cli.Command{
		Name:   "member",
		Usage:  "list, add, remove or promote cluster members (like etcdctl member)",
		Action: requireSubcommand,
		Subcommands: []*cli.Command{
			{
				Name:   "list",
				Usage:  "print the members as a table",
				Flags:  clientFlags(),
				Action: memberList,
			},
			{
				Name:      "add",
				Usage:     "add a member and print how to start it",
				ArgsUsage: "NAME",
				Flags: append(clientFlags(),
					&cli.StringFlag{Name: "peer-urls", Usage: "comma-separated peer URLs of the new member (required)"},
					&cli.BoolFlag{Name: "learner", Usage: "add as a non-voting learner (promote it once caught up)"},
					&cli.StringFlag{Name: "client-urls", Usage: "client URLs for the printed synod master command line"},
				),
				Action: memberAdd,
			},
			{
				Name:      "remove",
				Usage:     "remove a member by its hex ID",
				ArgsUsage: "ID",
				Flags:     clientFlags(),
				Action:    memberRemove,
			},
			{
				Name:      "promote",
				Usage:     "promote a learner to a voting member by its hex ID",
				ArgsUsage: "ID",
				Flags:     clientFlags(),
				Action:    memberPromote,
			},
		},
	}
}

func memberList(c *cli.Context) error {
	if err := exactArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	ec, eps, err := connect(c)
	if err != nil {
		return err
	}
	defer ec.Close()
	ctx, cancel := commandContext(c)
	defer cancel()
	resp, err := ec.MemberList(ctx)
	if err != nil {
		return requestError(c, eps, err)
	}
	printMembers(c, resp.Members)
	return nil
}

func printMembers(c *cli.Context, members []*pb.Member) {
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tPEER URLS\tCLIENT URLS\tLEARNER")
	for _, m := range members {
		name := m.Name
		if name == "" {
			name = "(unstarted)"
		}
		fmt.Fprintf(tw, "%x\t%s\t%s\t%s\t%t\n", m.ID, name,
			strings.Join(m.PeerURLs, ","), strings.Join(m.ClientURLs, ","), m.IsLearner)
	}
	tw.Flush()
}

func memberAdd(c *cli.Context) error {
	if err := exactArgs(c, 1, "the new member's NAME"); err != nil {
		return err
	}
	name := c.Args().First()
	if c.String("peer-urls") == "" {
		return usageError(c, "--peer-urls is required")
	}
	peers, err := urlList("--peer-urls", c.String("peer-urls"))
	if err != nil {
		return usageError(c, "%v", err)
	}
	clientURLs := "<client-url>"
	if s := c.String("client-urls"); s != "" {
		us, err := urlList("--client-urls", s)
		if err != nil {
			return usageError(c, "%v", err)
		}
		clientURLs = strings.Join(us, ",")
	}
	ec, eps, err := connect(c)
	if err != nil {
		return err
	}
	defer ec.Close()
	ctx, cancel := commandContext(c)
	defer cancel()
	add := ec.MemberAdd
	if c.Bool("learner") {
		add = ec.MemberAddAsLearner
	}
	resp, err := add(ctx, peers)
	if err != nil {
		return requestError(c, eps, err)
	}

	id := resp.Member.ID
	var initial []string
	for _, m := range resp.Members {
		n := m.Name
		switch {
		case m.ID == id:
			n = name
		case n == "":
			// A member that has not started (or not yet published its name):
			// synod identifies members by peer URL, so any unique name will
			// do, and "=url" would not parse.
			n = fmt.Sprintf("unstarted-%x", m.ID)
		}
		for _, u := range m.PeerURLs {
			initial = append(initial, n+"="+u)
		}
	}
	ic := strings.Join(initial, ",")
	w := c.App.Writer
	kind := "Member"
	if c.Bool("learner") {
		kind = "Learner"
	}
	fmt.Fprintf(w, "%s %x added to cluster %x\n\n", kind, id, resp.Header.ClusterId)
	fmt.Fprintf(w, "ETCD_NAME=%q\n", name)
	fmt.Fprintf(w, "ETCD_INITIAL_CLUSTER=%q\n", ic)
	fmt.Fprintf(w, "ETCD_INITIAL_ADVERTISE_PEER_URLS=%q\n", strings.Join(peers, ","))
	fmt.Fprintf(w, "ETCD_INITIAL_CLUSTER_STATE=\"existing\"\n\n")
	fmt.Fprintf(w, "Start it with:\n  synod master --name %s --data-dir %s.synod \\\n"+
		"    --listen-peer-urls %s --initial-advertise-peer-urls %s \\\n"+
		"    --listen-client-urls %s --advertise-client-urls %s \\\n"+
		"    --initial-cluster %s --initial-cluster-state existing\n",
		name, name, strings.Join(peers, ","), strings.Join(peers, ","), clientURLs, clientURLs, ic)
	if c.Bool("learner") {
		fmt.Fprintf(w, "then, once it has caught up:\n  synod member promote %x\n", id)
	}
	return nil
}

// memberID parses the hex member ID argument.
func memberID(c *cli.Context) (uint64, error) {
	if err := exactArgs(c, 1, "a member ID (hex, as member list prints it)"); err != nil {
		return 0, err
	}
	id, err := strconv.ParseUint(c.Args().First(), 16, 64)
	if err != nil {
		return 0, usageError(c, "bad member ID %q: want hex, as member list prints it", c.Args().First())
	}
	return id, nil
}

func memberRemove(c *cli.Context) error {
	return memberChange(c, "removed from", func(ctx context.Context, ec *clientv3.Client, id uint64) (*pb.ResponseHeader, error) {
		resp, err := ec.MemberRemove(ctx, id)
		if err != nil {
			return nil, err
		}
		return resp.Header, nil
	})
}

func memberPromote(c *cli.Context) error {
	return memberChange(c, "promoted in", func(ctx context.Context, ec *clientv3.Client, id uint64) (*pb.ResponseHeader, error) {
		resp, err := ec.MemberPromote(ctx, id)
		if err != nil {
			return nil, err
		}
		return resp.Header, nil
	})
}

// memberChange runs one membership change on the member ID argument.
func memberChange(c *cli.Context, done string, change func(context.Context, *clientv3.Client, uint64) (*pb.ResponseHeader, error)) error {
	id, err := memberID(c)
	if err != nil {
		return err
	}
	ec, eps, err := connect(c)
	if err != nil {
		return err
	}
	defer ec.Close()
	ctx, cancel := commandContext(c)
	defer cancel()
	hdr, err := change(ctx, ec, id)
	if err != nil {
		return requestError(c, eps, err)
	}
	fmt.Fprintf(c.App.Writer, "Member %x %s cluster %x\n", id, done, hdr.ClusterId)
	return nil
}
