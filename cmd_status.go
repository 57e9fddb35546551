package main

import (
	"fmt"
	"text/tabwriter"

	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "print each endpoint's raft and store status as a table",
		Flags: append(clientFlags(),
			&cli.BoolFlag{Name: "cluster", Usage: "query every member's client URLs from the member list, not just --endpoints"},
		),
		Action: runStatus,
	}
}

func runStatus(c *cli.Context) error {
	if err := exactArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	ec, eps, err := connect(c)
	if err != nil {
		return err
	}
	defer ec.Close()

	// Names come from the member list; a failure leaves them blank but
	// each endpoint can still answer for itself.
	names := map[uint64]string{}
	ctx, cancel := commandContext(c)
	ml, mlErr := ec.MemberList(ctx)
	cancel()
	if mlErr == nil {
		for _, m := range ml.Members {
			names[m.ID] = m.Name
		}
		if c.Bool("cluster") {
			eps = nil
			for _, m := range ml.Members {
				eps = append(eps, m.ClientURLs...)
			}
		}
	} else if c.Bool("cluster") {
		return requestError(c, eps, mlErr)
	}

	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tENDPOINT\tID\tLEADER\tRAFT TERM\tRAFT INDEX\tAPPLIED INDEX\tREVISION\tDB SIZE")
	failed := 0
	for _, ep := range eps {
		ctx, cancel := commandContext(c)
		st, err := ec.Status(ctx, ep)
		cancel()
		if err != nil {
			failed++
			fmt.Fprintf(c.App.ErrWriter, "%s: %v\n", ep, err)
			continue
		}
		id := st.Header.MemberId
		fmt.Fprintf(tw, "%s\t%s\t%x\t%t\t%d\t%d\t%d\t%d\t%s\n", names[id], ep, id, st.Leader == id,
			st.RaftTerm, st.RaftIndex, st.RaftAppliedIndex, st.Header.Revision, humanBytes(st.DbSize))
	}
	tw.Flush()
	if failed > 0 {
		return runtimeError(c, fmt.Errorf("%d of %d endpoints did not answer", failed, len(eps)))
	}
	return nil
}

// humanBytes formats n like etcdctl's table (SI units).
func humanBytes(n int64) string {
	const unit = 1000
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %cB", float64(n)/float64(div), "kMGTPE"[exp])
}
