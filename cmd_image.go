package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"synod/internal/testimage"
	"synod/node/runtime"
)

// imageCommand manages images in a worker's containerd: importing
// docker-save / OCI tarballs is how images reach a worker without a
// registry, and `image busybox` makes such a tarball from Debian's
// busybox-static, so a fresh offline machine has something to run.
func imageCommand() *cli.Command {
	socketFlags := []cli.Flag{
		&cli.StringFlag{Name: "containerd-socket", Value: "/run/containerd/containerd.sock", EnvVars: []string{"SYNOD_CONTAINERD_SOCKET"}, Usage: "containerd socket of the worker (a worker that runs its own containerd logs its socket at startup)"},
		&cli.StringFlag{Name: "namespace", Value: runtime.DefaultNamespace, Usage: "containerd namespace"},
	}
	return &cli.Command{
		Name:   "image",
		Usage:  "import, list and build container images on a worker",
		Action: requireSubcommand,
		Subcommands: []*cli.Command{
			{
				Name:      "import",
				Usage:     "import a docker-save or OCI-layout tarball (\"-\" for stdin) into containerd",
				ArgsUsage: "FILE.tar",
				Flags:     socketFlags,
				Action:    imageImport,
			},
			{
				Name:   "list",
				Usage:  "list the images in containerd",
				Flags:  socketFlags,
				Action: imageList,
			},
			{
				Name:      "busybox",
				Usage:     "write a busybox image tarball built from /bin/busybox (Debian's busybox-static)",
				ArgsUsage: "FILE.tar",
				Flags: []cli.Flag{
					&cli.StringFlag{Name: "ref", Value: testimage.Ref, Usage: "image name"},
					&cli.BoolFlag{Name: "oci", Usage: "write an OCI image layout instead of docker-save"},
				},
				Action: imageBusybox,
			},
		},
	}
}

// imageRuntime connects to the worker's containerd. Its state dir is
// private and temporary: this client never adopts containers' logs.
func imageRuntime(ctx context.Context, c *cli.Context) (*runtime.Runtime, func(), error) {
	dir, err := os.MkdirTemp("", "synod-image-")
	if err != nil {
		return nil, nil, runtimeError(c, err)
	}
	rt, err := runtime.Start(ctx, runtime.Config{
		Socket:    c.String("containerd-socket"),
		Namespace: c.String("namespace"),
		StateDir:  dir,
		Logger:    logger(c),
	})
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, runtimeError(c, err)
	}
	return rt, func() {
		_ = rt.Close()
		os.RemoveAll(dir)
	}, nil
}

func imageImport(c *cli.Context) error {
	if err := exactArgs(c, 1, "the image tarball FILE (or -)"); err != nil {
		return err
	}
	var in io.Reader = os.Stdin
	if name := c.Args().First(); name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return runtimeError(c, err)
		}
		defer f.Close()
		in = f
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rt, done, err := imageRuntime(ctx, c)
	if err != nil {
		return err
	}
	defer done()
	names, err := rt.ImportImage(ctx, in)
	if err != nil {
		return runtimeError(c, err)
	}
	for _, n := range names {
		fmt.Fprintf(c.App.Writer, "imported %s\n", n)
	}
	return nil
}

func imageList(c *cli.Context) error {
	if err := exactArgs(c, 0, "no arguments"); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	rt, done, err := imageRuntime(ctx, c)
	if err != nil {
		return err
	}
	defer done()
	imgs, err := rt.ListImages(ctx)
	if err != nil {
		return runtimeError(c, err)
	}
	tw := tabwriter.NewWriter(c.App.Writer, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tID\tSIZE")
	for _, img := range imgs {
		fmt.Fprintf(tw, "%s\t%s\t%d\n", img.Name, img.ID, img.Size)
	}
	return tw.Flush()
}

func imageBusybox(c *cli.Context) error {
	if err := exactArgs(c, 1, "the tarball FILE to write"); err != nil {
		return err
	}
	ref, err := runtime.NormalizeImage(c.String("ref"))
	if err != nil {
		return usageError(c, "%v", err)
	}
	format := testimage.DockerSave
	if c.Bool("oci") {
		format = testimage.OCI
	}
	f, err := os.Create(c.Args().First())
	if err != nil {
		return runtimeError(c, err)
	}
	if err := testimage.Write(f, format, ref, ""); err != nil {
		f.Close()
		os.Remove(f.Name())
		return runtimeError(c, err)
	}
	if err := f.Close(); err != nil {
		return runtimeError(c, err)
	}
	fmt.Fprintf(c.App.Writer, "wrote %s (%s)\n", f.Name(), ref)
	return nil
}
