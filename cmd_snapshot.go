package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"synod/raftstore"
)

func snapshotCommand() *cli.Command {
	return &cli.Command{
		Name:   "snapshot",
		Usage:  "save a store snapshot from a member, or restore one into a new data dir",
		Action: requireSubcommand,
		Subcommands: []*cli.Command{
			{
				Name:      "save",
				Usage:     "stream a snapshot from the first endpoint into FILE",
				ArgsUsage: "FILE",
				Flags:     clientFlags(),
				Action:    snapshotSave,
			},
			{
				Name:      "restore",
				Usage:     "create a member's data dir from a snapshot FILE",
				ArgsUsage: "FILE",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "data-dir", Usage: "data dir to create; must not exist or be empty (default \"<name>.synod\")"},
					&cli.StringFlag{Name: "name", Value: "default", Usage: "this member's name"},
					&cli.StringFlag{Name: "initial-cluster", Usage: "the restored cluster as name=peer-url,... (default \"<name>=<peer url>\")"},
					&cli.StringFlag{Name: "initial-advertise-peer-urls", Value: "http://127.0.0.1:2380", Usage: "this member's peer URL"},
					&cli.StringFlag{Name: "initial-cluster-token", Value: "synod-cluster", Usage: "accepted for etcdutl compatibility (synod derives member IDs from peer URLs alone)"},
					&cli.BoolFlag{Name: "skip-hash-check", Usage: "accept a snapshot without its integrity hash (e.g. copied from a data dir)"},
				},
				Action: snapshotRestore,
			},
		},
	}
}

// snapshotSave streams a snapshot into FILE.part, fsyncs it and renames it
// into place, so FILE is either absent or complete. The stream itself has no
// --command-timeout (a large store takes a while; Ctrl-C cancels it), so a
// Status call first checks, within the timeout, that the endpoint answers.
func snapshotSave(c *cli.Context) error {
	if err := exactArgs(c, 1, "the snapshot FILE to write"); err != nil {
		return err
	}
	file := c.Args().First()
	eps, err := endpoints(c)
	if err != nil {
		return err
	}
	// A snapshot is one member's state: ask exactly one.
	ec, err := newClient(c, eps[:1])
	if err != nil {
		return err
	}
	defer ec.Close()
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	pctx, cancel := commandContext(c)
	_, err = ec.Status(pctx, eps[0])
	cancel()
	if err != nil {
		return requestError(c, eps[:1], err)
	}

	part := file + ".part"
	f, err := os.OpenFile(part, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return runtimeError(c, err)
	}
	size, rev, err := func() (int64, int64, error) {
		defer f.Close()
		resp, err := ec.SnapshotWithVersion(ctx)
		if err != nil {
			return 0, 0, fmt.Errorf("%s: %w", eps[0], err)
		}
		defer resp.Snapshot.Close()
		n, err := io.Copy(f, resp.Snapshot)
		if err != nil {
			return n, 0, fmt.Errorf("%s: %w", eps[0], err)
		}
		if err := f.Sync(); err != nil {
			return n, 0, err
		}
		var rev int64
		if resp.Header != nil {
			rev = resp.Header.Revision
		}
		return n, rev, f.Close()
	}()
	if err == nil {
		err = os.Rename(part, file)
	}
	if err == nil {
		err = syncDir(filepath.Dir(file))
	}
	if err != nil {
		os.Remove(part)
		return runtimeError(c, err)
	}
	fmt.Fprintf(c.App.Writer, "Snapshot saved at %s: %d bytes, revision %d, from %s\n", file, size, rev, eps[0])
	return nil
}

// syncDir fsyncs a directory so a rename in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func snapshotRestore(c *cli.Context) error {
	if err := exactArgs(c, 1, "the snapshot FILE to restore"); err != nil {
		return err
	}
	file := c.Args().First()
	if st, err := os.Stat(file); err != nil {
		return usageError(c, "snapshot %v", err)
	} else if !st.Mode().IsRegular() {
		return usageError(c, "snapshot %s is not a regular file", file)
	}
	name := c.String("name")
	dataDir := c.String("data-dir")
	if dataDir == "" {
		dataDir = name + ".synod"
	}
	if err := requireEmptyOrMissing(dataDir); err != nil {
		return usageError(c, "--data-dir: %v", err)
	}
	peers, err := urlList("--initial-advertise-peer-urls", c.String("initial-advertise-peer-urls"))
	if err != nil {
		return usageError(c, "%v", err)
	}
	initial := c.String("initial-cluster")
	if initial == "" {
		initial = name + "=" + peers[0]
	}
	members, err := parseInitialCluster(initial)
	if err != nil {
		return usageError(c, "%v", err)
	}
	if err := checkMembership(name, peers[0], members); err != nil {
		return usageError(c, "%v", err)
	}
	if err := restoreDataDir(file, dataDir, name, peers[0], c.String("initial-cluster-token"), members, c.Bool("skip-hash-check")); err != nil {
		return runtimeError(c, err)
	}
	fmt.Fprintf(c.App.Writer, "Restored %s into %s for member %s\n", file, dataDir, name)
	return nil
}

// requireEmptyOrMissing refuses to restore over existing data.
func requireEmptyOrMissing(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if len(entries) > 0 {
		return fmt.Errorf("%s is not empty; restore only into a new data dir", dir)
	}
	return nil
}

// checkMembership checks that name is in members with peerURL.
func checkMembership(name, peerURL string, members []raftstore.Member) error {
	seen := map[string]bool{}
	found := false
	for _, m := range members {
		if seen[m.Name] {
			return fmt.Errorf("--initial-cluster names member %q twice", m.Name)
		}
		seen[m.Name] = true
		if m.Name == name {
			found = true
			if m.PeerURL != peerURL {
				return fmt.Errorf("--initial-cluster gives %s=%s but --initial-advertise-peer-urls is %s", m.Name, m.PeerURL, peerURL)
			}
		}
	}
	if !found {
		return fmt.Errorf("--initial-cluster does not include --name %q", name)
	}
	return nil
}
