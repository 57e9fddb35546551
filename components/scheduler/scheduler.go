package scheduler

import (
	"context"
	"log/slog"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
)

// DefaultSchedulerName is spec.schedulerName of the pods this scheduler takes.
const DefaultSchedulerName = "default-scheduler"

// Config is what a term of the scheduler is built from.
type Config struct {
	Client        kubernetes.Interface
	Informers     informers.SharedInformerFactory // started by the caller after New
	Recorder      record.EventRecorder
	Logger        *slog.Logger
	SchedulerName string // default DefaultSchedulerName
}

// Scheduler schedules pods (not implemented yet: it idles).
type Scheduler struct{ cfg Config }

// New registers the informers the scheduler needs; call Run after the
// caller has started cfg.Informers.
func New(cfg Config) (*Scheduler, error) { return &Scheduler{cfg: cfg}, nil }

// Run schedules until ctx ends.
func (s *Scheduler) Run(ctx context.Context) { <-ctx.Done() }
