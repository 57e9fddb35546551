package main

import (
	"fmt"
	"net"
	"time"

	"github.com/urfave/cli/v2"

	"synod/components"
	"synod/components/controller"
	"synod/components/controllers"
	"synod/leader"
)

// componentFlags are the scheduler's and controller-manager's flags of
// `synod master`, with kube-scheduler's and kube-controller-manager's names.
func componentFlags() []cli.Flag {
	d := controller.DefaultOptions()
	return []cli.Flag{
		&cli.BoolFlag{Name: "scheduler", Value: true, Usage: "run the scheduler (active on the master holding the kube-scheduler lease)"},
		&cli.StringSliceFlag{Name: "controllers", Value: cli.NewStringSlice(controllers.Default()...),
			Usage: "controllers to run: '*' for all, 'name' to enable, '-name' to disable, '-*' for none (known: " + joinNames() + ")"},
		&cli.DurationFlag{Name: "leader-elect-lease-duration", Value: leader.DefaultLeaseDuration, Usage: "how long a component lease is valid without renewal"},
		&cli.DurationFlag{Name: "leader-elect-renew-deadline", Value: leader.DefaultRenewDeadline, Usage: "a leader that cannot renew for this long stops its component (must be < lease duration)"},
		&cli.DurationFlag{Name: "leader-elect-retry-period", Value: leader.DefaultRetryPeriod, Usage: "how often to try to acquire or renew a lease"},
		&cli.StringFlag{Name: "cluster-cidr", Value: d.ClusterCIDR, Usage: "CIDR that node podCIDRs are allocated from"},
		&cli.IntFlag{Name: "node-cidr-mask-size", Value: d.NodeCIDRMaskSize, Usage: "prefix length of each node's podCIDR"},
		&cli.DurationFlag{Name: "node-monitor-period", Value: d.NodeMonitorPeriod, Usage: "how often node health is checked"},
		&cli.DurationFlag{Name: "node-monitor-grace-period", Value: d.NodeMonitorGracePeriod, Usage: "how long a node may go without a heartbeat before it is marked Unknown and tainted"},
		&cli.IntFlag{Name: "concurrent-syncs", Value: d.ConcurrentSyncs, Usage: "workers per controller"},
	}
}

func joinNames() string {
	s := ""
	for i, n := range controllers.Names() {
		if i > 0 {
			s += ", "
		}
		s += n
	}
	return s
}

// componentConfig turns the flags into a components.Config (without the
// API connection, which the master adds once its API serves).
func componentConfig(c *cli.Context) (components.Config, error) {
	names, err := controllers.Select(c.StringSlice("controllers"))
	if err != nil {
		return components.Config{}, fmt.Errorf("--controllers: %w", err)
	}
	cfg := components.Config{
		Scheduler:     c.Bool("scheduler"),
		Controllers:   names,
		LeaseDuration: c.Duration("leader-elect-lease-duration"),
		RenewDeadline: c.Duration("leader-elect-renew-deadline"),
		RetryPeriod:   c.Duration("leader-elect-retry-period"),
		ControllerOptions: controller.Options{
			ClusterCIDR:            c.String("cluster-cidr"),
			NodeCIDRMaskSize:       c.Int("node-cidr-mask-size"),
			NodeMonitorPeriod:      c.Duration("node-monitor-period"),
			NodeMonitorGracePeriod: c.Duration("node-monitor-grace-period"),
			ConcurrentSyncs:        c.Int("concurrent-syncs"),
		},
	}
	if cfg.LeaseDuration%time.Second != 0 {
		return cfg, fmt.Errorf("--leader-elect-lease-duration %s must be whole seconds (a Lease stores seconds)", cfg.LeaseDuration)
	}
	if cfg.LeaseDuration <= cfg.RenewDeadline {
		return cfg, fmt.Errorf("--leader-elect-lease-duration %s must be greater than --leader-elect-renew-deadline %s", cfg.LeaseDuration, cfg.RenewDeadline)
	}
	if cfg.RetryPeriod <= 0 || float64(cfg.RenewDeadline) <= 1.2*float64(cfg.RetryPeriod) {
		return cfg, fmt.Errorf("--leader-elect-renew-deadline %s must be greater than 1.2 x --leader-elect-retry-period %s", cfg.RenewDeadline, cfg.RetryPeriod)
	}
	if cfg.RenewDeadline <= time.Second+time.Duration(1.2*float64(cfg.RetryPeriod)) {
		return cfg, fmt.Errorf("--leader-elect-renew-deadline %s must be greater than 1s + 1.2 x --leader-elect-retry-period %s (other masters see lease renewals in whole seconds)", cfg.RenewDeadline, cfg.RetryPeriod)
	}
	_, cidr, err := net.ParseCIDR(cfg.ControllerOptions.ClusterCIDR)
	if err != nil {
		return cfg, fmt.Errorf("--cluster-cidr: %w", err)
	}
	ones, bits := cidr.Mask.Size()
	if m := cfg.ControllerOptions.NodeCIDRMaskSize; m < ones || m > bits {
		return cfg, fmt.Errorf("--node-cidr-mask-size %d must be between the --cluster-cidr prefix /%d and /%d", m, ones, bits)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"node-monitor-period", cfg.ControllerOptions.NodeMonitorPeriod}, {"node-monitor-grace-period", cfg.ControllerOptions.NodeMonitorGracePeriod}} {
		if d.v <= 0 {
			return cfg, fmt.Errorf("--%s must be positive", d.name)
		}
	}
	if cfg.ControllerOptions.ConcurrentSyncs < 1 {
		return cfg, fmt.Errorf("--concurrent-syncs must be at least 1")
	}
	return cfg, nil
}
