package runtime

import (
	"context"
	"io"
	"log/slog"

	clog "github.com/containerd/log"
	"github.com/sirupsen/logrus"
)

// containerdLogger sends the containerd client's own logs (logrus, e.g.
// "trying next host" during a pull) to our slog logger at debug level,
// through the request context rather than containerd's global logger.
func containerdLogger(l *slog.Logger) *clog.Entry {
	lr := logrus.New()
	lr.SetOutput(io.Discard)
	lr.SetLevel(logrus.DebugLevel)
	lr.AddHook(slogHook{l})
	return logrus.NewEntry(lr)
}

type slogHook struct{ l *slog.Logger }

func (slogHook) Levels() []logrus.Level { return logrus.AllLevels }

func (h slogHook) Fire(e *logrus.Entry) error {
	attrs := make([]any, 0, 2*len(e.Data))
	for k, v := range e.Data {
		attrs = append(attrs, k, v)
	}
	h.l.Log(context.Background(), slog.LevelDebug, "containerd: "+e.Message, attrs...)
	return nil
}
