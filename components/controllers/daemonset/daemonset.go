// Package daemonset is the controller-manager's daemonset controller.
package daemonset

import (
	"context"

	"synod/components/controller"
)

// New builds the controller (not implemented yet: it idles).
func New(c *controller.Context) (controller.Runner, error) {
	return controller.RunnerFunc(func(ctx context.Context) { <-ctx.Done() }), nil
}
