package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"

	sockaddr "github.com/hashicorp/go-sockaddr"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/urfave/cli/v2"

	"synod/node/gossip"
)

// gossipOptions are a master's gossip flags: with --gossip-addr the master
// joins the pool, so workers learn its API URL from gossip.
type gossipOptions struct {
	addr    string   // --gossip-addr; "" leaves the master out of the pool
	join    []string // --gossip-join
	keyFile string   // --gossip-key-file
}

func gossipFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "gossip-addr", Usage: fmt.Sprintf("join the gossip pool, listening on HOST[:PORT] (port %d by default); workers learn this master's API from it", gossip.DefaultPort)},
		&cli.StringSliceFlag{Name: "gossip-join", Usage: "gossip members to join through, HOST:PORT (repeat)"},
		&cli.StringFlag{Name: "gossip-key-file", Usage: "gossip encryption key file (base64 AES key)"},
	}
}

func gossipConfig(c *cli.Context) (gossipOptions, error) {
	o := gossipOptions{addr: c.String("gossip-addr"), join: c.StringSlice("gossip-join"), keyFile: c.String("gossip-key-file")}
	if o.addr == "" {
		if len(o.join) > 0 || o.keyFile != "" {
			return o, fmt.Errorf("--gossip-join and --gossip-key-file need --gossip-addr")
		}
		return o, nil
	}
	if _, _, err := splitHostPortDefault(o.addr, gossip.DefaultPort); err != nil {
		return o, fmt.Errorf("--gossip-addr: %w", err)
	}
	if o.keyFile != "" {
		if _, err := gossip.ReadKeyFile(o.keyFile); err != nil {
			return o, fmt.Errorf("--gossip-key-file: %w", err)
		}
	}
	return o, nil
}

// startGossip joins the pool as a master announcing its API URL. The pool
// leaves when ctx ends.
func startGossip(ctx context.Context, name string, o gossipOptions, api apiOptions, reg prometheus.Registerer, log *slog.Logger) (*gossip.Pool, error) {
	host, port, err := splitHostPortDefault(o.addr, gossip.DefaultPort)
	if err != nil {
		return nil, err
	}
	apiHost := api.bindAddress
	if ip := net.ParseIP(apiHost); apiHost == "" || (ip != nil && ip.IsUnspecified()) {
		apiHost = "" // filled in from the gossip advertise address below
	}
	cfg := gossip.Config{Name: name, BindAddr: host, BindPort: port, Role: gossip.RoleMaster, Version: version,
		KeyFile: o.keyFile, Join: o.join, Logger: log.With("component", "gossip"), Registerer: reg}
	if apiHost != "" {
		cfg.APIServerURL = "https://" + net.JoinHostPort(apiHost, strconv.Itoa(api.securePort))
	} else {
		// The API listens on every address: announce the one gossip uses.
		adv := host
		if ip := net.ParseIP(adv); adv == "" || (ip != nil && ip.IsUnspecified()) {
			// memberlist's own choice of address, made explicit.
			adv, err = sockaddr.GetPrivateIP()
			if err != nil || adv == "" {
				return nil, fmt.Errorf("gossip: no private address to announce the API on (give --gossip-addr an IP): %v", err)
			}
		}
		cfg.AdvertiseAddr = adv
		cfg.APIServerURL = "https://" + net.JoinHostPort(adv, strconv.Itoa(api.securePort))
	}
	pool, err := gossip.Start(ctx, cfg)
	if err != nil {
		return nil, err
	}
	log.Info("joined the gossip pool", "addr", pool.LocalAddr(), "api", cfg.APIServerURL)
	return pool, nil
}
