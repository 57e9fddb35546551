package controllers

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"synod/components/controller"
	"synod/components/controllers/daemonset"
	"synod/components/controllers/deployment"
	"synod/components/controllers/endpoint"
	"synod/components/controllers/endpointslice"
	"synod/components/controllers/garbagecollector"
	"synod/components/controllers/job"
	"synod/components/controllers/namespace"
	"synod/components/controllers/nodeipam"
	"synod/components/controllers/nodelifecycle"
	"synod/components/controllers/replicaset"
	"synod/components/controllers/serviceaccount"
)

// all maps kube-controller-manager's controller names to constructors.
var all = map[string]controller.InitFunc{
	"nodelifecycle":    nodelifecycle.New,
	"nodeipam":         nodeipam.New,
	"replicaset":       replicaset.New,
	"deployment":       deployment.New,
	"daemonset":        daemonset.New,
	"job":              job.New,
	"endpoint":         endpoint.New,
	"endpointslice":    endpointslice.New,
	"namespace":        namespace.New,
	"garbagecollector": garbagecollector.New,
	"serviceaccount":   serviceaccount.New,
}

// Names lists every controller, sorted.
func Names() []string {
	names := make([]string, 0, len(all))
	for n := range all {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Select resolves kube-controller-manager's --controllers syntax: "*" is
// every controller, "name" enables one, "-name" disables one; "-*" or an
// empty list runs none. Unknown names are an error.
func Select(spec []string) ([]string, error) {
	enabled := map[string]bool{}
	for _, raw := range spec {
		item := strings.TrimSpace(raw)
		switch {
		case item == "":
		case item == "*":
			for n := range all {
				if _, off := enabled[n]; !off {
					enabled[n] = true
				}
			}
		case item == "-*":
			for n := range all {
				enabled[n] = false
			}
		case strings.HasPrefix(item, "-"):
			if _, ok := all[item[1:]]; !ok {
				return nil, fmt.Errorf("unknown controller %q (known: %s)", item[1:], strings.Join(Names(), ", "))
			}
			enabled[item[1:]] = false
		default:
			if _, ok := all[item]; !ok {
				return nil, fmt.Errorf("unknown controller %q (known: %s)", item, strings.Join(Names(), ", "))
			}
			enabled[item] = true
		}
	}
	var out []string
	for n, on := range enabled {
		if on {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out, nil
}

// Run builds the named controllers from c, starts c.Informers, waits for
// their caches and runs the controllers until ctx ends. It returns once
// every controller's Run has returned and the informers have stopped.
func Run(ctx context.Context, c *controller.Context, names []string) error {
	runners := make([]controller.Runner, 0, len(names))
	for _, n := range names {
		init, ok := all[n]
		if !ok {
			return fmt.Errorf("unknown controller %q", n)
		}
		r, err := init(c)
		if err != nil {
			return fmt.Errorf("start %s controller: %w", n, err)
		}
		runners = append(runners, r)
	}
	c.Informers.Start(ctx.Done())
	defer c.Informers.Shutdown()
	synced := c.Informers.WaitForCacheSync(ctx.Done())
	for typ, ok := range synced {
		if !ok && ctx.Err() == nil {
			return fmt.Errorf("informer cache for %v did not sync", typ)
		}
	}
	if ctx.Err() != nil {
		return nil
	}
	c.Logger.Info("controllers running", "controllers", strings.Join(names, ","))
	var wg sync.WaitGroup
	for i, r := range runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			r.Run(ctx)
			if d := time.Since(start); ctx.Err() == nil {
				c.Logger.Error("controller returned before its term ended", "controller", names[i], "after", d)
			}
		}()
	}
	wg.Wait()
	return nil
}

// Default is the --controllers default.
func Default() []string { return []string{"*"} }

// Valid reports whether name is a known controller.
func Valid(name string) bool { return slices.Contains(Names(), name) }
