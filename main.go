// Command synod is a Raft-replicated, etcd-compatible store (and, in time, a
// whole Kubernetes control plane) shipped as one binary.
//
// Exit codes: 0 success, 1 runtime failure, 2 bad flags or arguments.
package main

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"

	"github.com/urfave/cli/v2"
)

func main() {
	os.Exit(run(os.Args, os.Stdout, os.Stderr))
}

// run is main without os.Exit, so tests can drive the CLI in-process.
func run(args []string, stdout, stderr io.Writer) int {
	app := newApp(stdout, stderr)
	return exitCode(app.Run(reorderArgs(app, args)), stderr)
}

// version is synod's version, reported in gossip metadata; release builds
// set it with -ldflags "-X main.version=...".
var version = "dev"

func newApp(stdout, stderr io.Writer) *cli.App {
	app := &cli.App{
		Name:     "synod",
		HelpName: "synod",
		Usage:    "a Raft-replicated, etcd-compatible store in one binary",
		UsageText: "synod [--log-level LEVEL] COMMAND [flags] [args]\n\n" +
			"Flags may follow arguments. Exit codes: 0 ok, 1 runtime failure, 2 bad usage.",
		HideVersion: true,
		Writer:      stdout,
		ErrWriter:   stderr,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "debug, info, warn or error", EnvVars: []string{"SYNOD_LOG_LEVEL"}},
		},
		Before: func(c *cli.Context) error {
			var level slog.Level
			if err := level.UnmarshalText([]byte(c.String("log-level"))); err != nil {
				return usageError(c, "bad --log-level %q: want debug, info, warn or error", c.String("log-level"))
			}
			c.App.Metadata["logger"] = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
			return nil
		},
		Commands: []*cli.Command{
			masterCommand(),
			upCommand(),
			memberCommand(),
			statusCommand(),
			snapshotCommand(),
			benchCommand(),
			kubeconfigCommand(),
			hollowCommand(),
			imageCommand(),
			workerCommand(),
			membersCommand(),
			chaosCommand(),
			pkiCommand(),
		},
		Action: requireSubcommand,
		// Errors are printed and turned into exit codes by exitCode, not
		// by the library (which would call os.Exit).
		ExitErrHandler: func(*cli.Context, error) {},
	}
	setUsageErrors(app.Commands)
	app.OnUsageError = onUsageError
	return app
}

// logger returns the logger set up by the app's Before hook.
func logger(c *cli.Context) *slog.Logger {
	if l, ok := c.App.Metadata["logger"].(*slog.Logger); ok {
		return l
	}
	return slog.New(slog.DiscardHandler)
}

// exitCode prints err (if any) to stderr and maps it to the exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ec cli.ExitCoder
	if errors.As(err, &ec) {
		if msg := strings.TrimSpace(err.Error()); msg != "" {
			fmt.Fprintln(stderr, msg)
		}
		if ec.ExitCode() == 3 { // urfave's "No help topic for ..." is a usage error
			return 2
		}
		return ec.ExitCode()
	}
	fmt.Fprintf(stderr, "synod: %v\n", err)
	return 1
}

// usageError reports bad flags or arguments: exit code 2, with a pointer to
// the command's help.
func usageError(c *cli.Context, format string, args ...any) error {
	name := "synod"
	if c != nil && c.Command != nil && c.Command.HelpName != "" {
		name = c.Command.HelpName
	}
	return cli.Exit(fmt.Sprintf("%s: %s\nRun '%s --help' for usage.", name, fmt.Sprintf(format, args...), name), 2)
}

// runtimeError reports a failure of the command itself: exit code 1.
func runtimeError(c *cli.Context, err error) error {
	return cli.Exit(fmt.Sprintf("%s: %v", c.Command.HelpName, err), 1)
}

func onUsageError(c *cli.Context, err error, _ bool) error {
	return usageError(c, "%v", err)
}

// setUsageErrors gives every command the app's usage-error handler; urfave
// only applies App.OnUsageError to the root.
func setUsageErrors(cmds []*cli.Command) {
	for _, cmd := range cmds {
		cmd.OnUsageError = onUsageError
		setUsageErrors(cmd.Subcommands)
	}
}

// requireSubcommand is the action of commands that only group subcommands.
func requireSubcommand(c *cli.Context) error {
	if c.Args().Present() {
		return usageError(c, "unknown command %q", c.Args().First())
	}
	cli.ShowSubcommandHelp(c)
	return cli.Exit("", 2)
}

// exactArgs checks the number of positional arguments.
func exactArgs(c *cli.Context, n int, what string) error {
	if c.NArg() != n {
		return usageError(c, "want %s, got %d argument(s): %q", what, c.NArg(), c.Args().Slice())
	}
	return nil
}

// reorderArgs lets flags follow positional arguments (`member add NAME
// --peer-urls URL`), which Go's flag package, and so urfave/cli v2, does not
// allow. It moves each flag next to the command that defines it, the nearest
// enclosing one first, so global flags such as --log-level also work after a
// command name. Everything after "--" is left alone.
func reorderArgs(app *cli.App, args []string) []string {
	if len(args) < 2 {
		return args
	}
	type level struct {
		name  string
		flags []cli.Flag
		subs  []*cli.Command
		out   []string
	}
	levels := []*level{{flags: app.Flags, subs: app.Commands}}
	var pos []string
	rest := args[1:]
	for i := 0; i < len(rest); i++ {
		a := rest[i]
		if a == "--" {
			pos = append(pos, rest[i:]...)
			break
		}
		cur := levels[len(levels)-1]
		if strings.HasPrefix(a, "-") && a != "-" {
			name, inline := strings.TrimLeft(a, "-"), false
			if j := strings.IndexByte(name, '='); j >= 0 {
				name, inline = name[:j], true
			}
			lv := cur
			for j := len(levels) - 1; j >= 0; j-- {
				if findFlag(levels[j].flags, name) != nil {
					lv = levels[j]
					break
				}
			}
			lv.out = append(lv.out, a)
			if f := findFlag(lv.flags, name); f != nil && !inline && !isBool(f) && i+1 < len(rest) {
				i++
				lv.out = append(lv.out, rest[i])
			}
			continue
		}
		if len(pos) == 0 {
			if sub := findCommand(cur.subs, a); sub != nil {
				levels = append(levels, &level{name: a, flags: sub.Flags, subs: sub.Subcommands})
				continue
			}
		}
		pos = append(pos, a)
	}
	out := []string{args[0]}
	for _, lv := range levels {
		if lv.name != "" {
			out = append(out, lv.name)
		}
		out = append(out, lv.out...)
	}
	return append(out, pos...)
}

func findFlag(flags []cli.Flag, name string) cli.Flag {
	for _, f := range flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}

func isBool(f cli.Flag) bool {
	_, ok := f.(*cli.BoolFlag)
	return ok
}

func findCommand(cmds []*cli.Command, name string) *cli.Command {
	for _, c := range cmds {
		for _, n := range c.Names() {
			if n == name {
				return c
			}
		}
	}
	return nil
}
