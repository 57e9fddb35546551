package main

import (
	"context"
	"log/slog"

	"k8s.io/klog/v2"
)

// routeKlog sends client-go's klog output (leader election, reflectors) to
// the master's slog logger, one level quieter: client-go logs routine
// retries at info and transient failures at error, which for a master are
// debug and warn. klog is process-global by its design; this is the only
// place it is configured.
func routeKlog(log *slog.Logger) {
	klog.SetSlogLogger(slog.New(quieter{log.Handler().WithAttrs([]slog.Attr{slog.String("source", "client-go")})}))
}

type quieter struct{ slog.Handler }

func (q quieter) level(l slog.Level) slog.Level {
	switch {
	case l >= slog.LevelError:
		return slog.LevelWarn
	case l >= slog.LevelInfo:
		return slog.LevelDebug
	default:
		return l - 4
	}
}

func (q quieter) Enabled(ctx context.Context, l slog.Level) bool {
	return q.Handler.Enabled(ctx, q.level(l))
}

func (q quieter) Handle(ctx context.Context, r slog.Record) error {
	r.Level = q.level(r.Level)
	return q.Handler.Handle(ctx, r)
}

func (q quieter) WithAttrs(as []slog.Attr) slog.Handler { return quieter{q.Handler.WithAttrs(as)} }
func (q quieter) WithGroup(name string) slog.Handler    { return quieter{q.Handler.WithGroup(name)} }
