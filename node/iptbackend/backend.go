package iptbackend

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// Backend names an iptables backend.
type Backend string

const (
	Auto   Backend = "auto" // detect (Detect)
	NFT    Backend = "nft"
	Legacy Backend = "legacy"
)

// Parse checks a --iptables-backend value.
func Parse(s string) (Backend, error) {
	switch b := Backend(s); b {
	case Auto, NFT, Legacy:
		return b, nil
	case "":
		return Auto, nil
	}
	return "", fmt.Errorf("iptables backend %q: want auto, nft or legacy", s)
}

// Tools are one backend's binaries, as absolute paths.
type Tools struct {
	Backend  Backend
	IPTables string // iptables (rule by rule; go-iptables runs it)
	Restore  string // iptables-restore
	Save     string // iptables-save
}

// ToolsFor finds b's binaries (b must be NFT or Legacy).
func ToolsFor(b Backend) (Tools, error) {
	if b != NFT && b != Legacy {
		return Tools{}, fmt.Errorf("iptables backend %q has no tools", b)
	}
	t := Tools{Backend: b}
	for _, x := range []struct {
		dst  *string
		name string
	}{{&t.IPTables, "iptables-" + string(b)}, {&t.Restore, "iptables-" + string(b) + "-restore"}, {&t.Save, "iptables-" + string(b) + "-save"}} {
		p, err := exec.LookPath(x.name)
		if err != nil {
			return Tools{}, fmt.Errorf("iptables backend %s: %w", b, err)
		}
		*x.dst = p
	}
	return t, nil
}

// Detect picks the backend for the network namespace the caller's thread
// is in (run it through the caller's namespace switcher): the one with more
// rules, legacy when neither has any or nft's tools are missing, nft when
// legacy's are missing or its kernel side is unavailable. reason says why,
// for the log.
func Detect(ctx context.Context) (tools Tools, reason string, err error) {
	nft, nftErr := ToolsFor(NFT)
	legacy, legacyErr := ToolsFor(Legacy)
	switch {
	case nftErr != nil && legacyErr != nil:
		return Tools{}, "", errors.Join(nftErr, legacyErr)
	case nftErr != nil:
		return legacy, "iptables-nft is not installed", nil
	case legacyErr != nil:
		return nft, "iptables-legacy is not installed", nil
	}
	nftRules, err := countRules(ctx, nft)
	if err != nil {
		return Tools{}, "", err
	}
	legacyRules, err := countRules(ctx, legacy)
	if err != nil {
		// No ip_tables in this kernel: nft is all there is.
		return nft, fmt.Sprintf("iptables-legacy unusable (%v)", err), nil
	}
	switch {
	case nftRules > legacyRules:
		return nft, fmt.Sprintf("nft holds %d rules, legacy %d", nftRules, legacyRules), nil
	case legacyRules > nftRules:
		return legacy, fmt.Sprintf("legacy holds %d rules, nft %d", legacyRules, nftRules), nil
	}
	return legacy, "no rules in either backend; legacy restores large rule sets much faster", nil
}

// countRules counts the rules (-A lines) in t's save output for the tables
// the worker uses.
func countRules(ctx context.Context, t Tools) (int, error) {
	n := 0
	for _, table := range []string{"nat", "filter"} {
		var stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, t.Save, "-t", table)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return 0, fmt.Errorf("%s -t %s: %w: %s", t.Save, table, err, strings.TrimSpace(stderr.String()))
		}
		for _, line := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(line, "-A ") {
				n++
			}
		}
	}
	return n, nil
}

// Resolve turns a configured backend into tools: Auto detects, the others
// are looked up. Call it in the namespace the rules go into.
func Resolve(ctx context.Context, b Backend) (Tools, string, error) {
	if b == Auto || b == "" {
		return Detect(ctx)
	}
	t, err := ToolsFor(b)
	return t, "configured", err
}
