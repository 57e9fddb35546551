package gossip

import (
	"context"
	"log/slog"
	"strings"
)

// logWriter turns memberlist's log lines ("[WARN] memberlist: ...") into
// slog records at the matching level.
type logWriter struct {
	log    *slog.Logger
	onLine func(string) // sees each line without its level and prefix
}

func (w logWriter) Write(b []byte) (int, error) {
	line := strings.TrimSpace(string(b))
	level := slog.LevelInfo
	for prefix, l := range map[string]slog.Level{
		"[DEBUG]": slog.LevelDebug, "[TRACE]": slog.LevelDebug, "[INFO]": slog.LevelInfo,
		"[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError,
	} {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			level, line = l, strings.TrimSpace(rest)
			break
		}
	}
	line = strings.TrimPrefix(line, "memberlist: ")
	if w.onLine != nil {
		w.onLine(line)
	}
	w.log.Log(context.Background(), level, line, "from", "memberlist")
	return len(b), nil
}
