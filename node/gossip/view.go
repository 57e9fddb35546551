package gossip

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"
)

// ViewConfig configures View.
type ViewConfig struct {
	Join    []string // members to ask, HOST:PORT
	Key     []byte   // the pool's key, or
	KeyFile string
	// BindAddr is where the viewer listens while it is a member (default
	// 127.0.0.1 when every Join address is a loopback one, else 0.0.0.0:
	// the members must be able to reach it back).
	BindAddr string
	Logger   *slog.Logger
}

// View returns the pool's membership as the first reachable member of
// cfg.Join sees it. memberlist has no query API, so the viewer joins the
// pool as a short-lived member with role "cli" (the join's state exchange
// brings the full member list and the departed members), reads it and
// leaves; members do not list or remember CLI members. It fails when no
// member answers before ctx ends.
func View(ctx context.Context, cfg ViewConfig) ([]Member, error) {
	if len(cfg.Join) == 0 {
		return nil, errors.New("gossip: no member address to ask")
	}
	if cfg.BindAddr == "" {
		cfg.BindAddr = "127.0.0.1"
		for _, a := range cfg.Join {
			host, _, err := net.SplitHostPort(a)
			if err != nil {
				host = a
			}
			if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
				cfg.BindAddr = "0.0.0.0"
			}
		}
	}
	suffix := make([]byte, 4)
	rand.Read(suffix)
	// The viewer is not stopped through runCtx: it leaves explicitly below.
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	p, err := Start(runCtx, Config{
		Name:     "synod-members-" + hex.EncodeToString(suffix),
		BindAddr: cfg.BindAddr, BindPort: RandomPort,
		Role: RoleCLI, Key: cfg.Key, KeyFile: cfg.KeyFile, Join: cfg.Join,
		JoinBackoffMin: 200 * time.Millisecond, JoinBackoffMax: time.Second,
		Logger: cfg.Logger,
	})
	if err != nil {
		return nil, err
	}
	select {
	case <-p.Joined():
	case <-ctx.Done():
		// Not waiting for Done: a join attempt to an unreachable address
		// may take memberlist's TCP timeout to give up, and nothing is
		// left to clean up after Shutdown.
		p.Shutdown()
		if jerr := p.JoinError(); jerr != nil {
			return nil, fmt.Errorf("no member reachable at %v: %w", cfg.Join, jerr)
		}
		return nil, fmt.Errorf("no member reachable at %v: %w", cfg.Join, ctx.Err())
	}
	members := p.Members()
	if err := p.Leave(time.Second); err != nil {
		p.log.Debug("viewer leave", "err", err)
	}
	<-p.Done()
	return members, nil
}
