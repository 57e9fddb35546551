package gossip

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/prometheus/client_golang/prometheus"
)

// DefaultPort is the gossip port (TCP and UDP), memberlist's and serf's.
const DefaultPort = 7946

// RandomPort as Config.BindPort binds any free port (tests); the port is
// then Pool.LocalAddr's.
const RandomPort = -1

// Roles of pool members.
const (
	RoleMaster = "master"
	RoleWorker = "worker"
	// RoleCLI is a short-lived member such as `synod members`: memberlist
	// has no query API, so a viewer joins, reads the view and leaves.
	// Members hides CLI members and the pool does not remember them once
	// they are gone.
	RoleCLI = "cli"
)

// Config configures one member of the pool.
type Config struct {
	// Name is the member's unique name in the pool (default NodeName, else
	// the hostname).
	Name string
	// BindAddr is the address to listen on (default "0.0.0.0").
	BindAddr string
	// BindPort is the TCP and UDP port (default DefaultPort; RandomPort for
	// any free one).
	BindPort int
	// AdvertiseAddr is the IP other members reach this one at (default:
	// BindAddr, or a private address of this host when BindAddr is
	// 0.0.0.0).
	AdvertiseAddr string

	Role         string // RoleMaster, RoleWorker or RoleCLI
	APIServerURL string // a master's Kubernetes API URL, e.g. https://10.0.0.1:6443
	NodeName     string // a worker's Node name
	Version      string // synod version

	// Key is the gossip encryption key (16, 24 or 32 bytes: AES-128/192/256
	// GCM); KeyFile reads it (see ReadKeyFile). At most one of them; with
	// neither, gossip is plain text.
	Key     []byte
	KeyFile string

	// Join lists members to join through, HOST:PORT (the port defaults to
	// BindPort). Start tries them once and then keeps retrying in the
	// background with backoff until one answers, so members can start in
	// any order.
	Join []string

	// LeaveTimeout bounds the leave broadcast when the context ends
	// (default 2s).
	LeaveTimeout time.Duration
	// DepartedRetention is how long dead and left members stay in Members
	// (default 1h); a member that comes back is alive again at once.
	DepartedRetention time.Duration
	// RejoinInterval is how often a member that has no other alive member
	// tries its Join list and the departed members again (default 30s), so
	// a member cut off from everyone finds its way back.
	RejoinInterval time.Duration
	// JoinBackoff bounds the retry delay of the first join (default 500ms
	// doubling to 15s).
	JoinBackoffMin, JoinBackoffMax time.Duration

	// Tune, if set, adjusts memberlist's configuration after the pool has
	// filled it in from memberlist.DefaultLANConfig (tests shorten the
	// probe and suspicion timers with it).
	Tune func(*memberlist.Config)

	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: no metrics
}

func (c Config) withDefaults() (Config, error) {
	if c.Name == "" {
		c.Name = c.NodeName
	}
	if c.Name == "" {
		h, err := os.Hostname()
		if err != nil {
			return c, fmt.Errorf("gossip: no Name and no hostname: %w", err)
		}
		c.Name = h
	}
	if c.BindAddr == "" {
		c.BindAddr = "0.0.0.0"
	}
	switch {
	case c.BindPort == 0:
		c.BindPort = DefaultPort
	case c.BindPort == RandomPort:
		c.BindPort = 0 // memberlist: any free port
	case c.BindPort < 0 || c.BindPort > 65535:
		return c, fmt.Errorf("gossip: bad BindPort %d", c.BindPort)
	}
	switch c.Role {
	case RoleMaster, RoleWorker, RoleCLI:
	default:
		return c, fmt.Errorf("gossip: bad Role %q: want %q, %q or %q", c.Role, RoleMaster, RoleWorker, RoleCLI)
	}
	if c.Role == RoleMaster && c.APIServerURL == "" {
		return c, errors.New("gossip: a master needs its APIServerURL")
	}
	if c.KeyFile != "" {
		if c.Key != nil {
			return c, errors.New("gossip: Key and KeyFile are exclusive")
		}
	} else if c.Key != nil {
		if err := memberlist.ValidateKey(c.Key); err != nil {
			return c, fmt.Errorf("gossip: bad Key: %w", err)
		}
	}
	if c.LeaveTimeout == 0 {
		c.LeaveTimeout = 2 * time.Second
	}
	if c.DepartedRetention == 0 {
		c.DepartedRetention = time.Hour
	}
	if c.RejoinInterval == 0 {
		c.RejoinInterval = 30 * time.Second
	}
	if c.JoinBackoffMin == 0 {
		c.JoinBackoffMin = 500 * time.Millisecond
	}
	if c.JoinBackoffMax == 0 {
		c.JoinBackoffMax = 15 * time.Second
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// keys returns the configured keyring, primary first (nil: no encryption).
func (c Config) keys() ([][]byte, error) {
	if c.KeyFile != "" {
		return ReadKeyFile(c.KeyFile)
	}
	if c.Key != nil {
		return [][]byte{c.Key}, nil
	}
	return nil, nil
}

// ReadKeyFile reads gossip keys from a file holding either one base64 key
// (what `head -c 32 /dev/urandom | base64` writes) or a JSON array of
// base64 keys, the primary first (serf's keyring file). Every key must
// decode to 16, 24 or 32 bytes.
func ReadKeyFile(path string) ([][]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("gossip key file: %w", err)
	}
	text := strings.TrimSpace(string(b))
	var encoded []string
	if strings.HasPrefix(text, "[") {
		if err := json.Unmarshal([]byte(text), &encoded); err != nil {
			return nil, fmt.Errorf("gossip key file %s: not a JSON array of base64 keys: %w", path, err)
		}
	} else {
		encoded = []string{text}
	}
	if len(encoded) == 0 || encoded[0] == "" {
		return nil, fmt.Errorf("gossip key file %s: no key in it", path)
	}
	keys := make([][]byte, 0, len(encoded))
	for i, s := range encoded {
		k, err := DecodeKey(s)
		if err != nil {
			return nil, fmt.Errorf("gossip key file %s: key %d: %w", path, i+1, err)
		}
		keys = append(keys, k)
	}
	return keys, nil
}

// DecodeKey decodes a base64 gossip key and checks its length.
func DecodeKey(s string) ([]byte, error) {
	k, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return nil, fmt.Errorf("not base64: %w", err)
	}
	if err := memberlist.ValidateKey(k); err != nil {
		return nil, fmt.Errorf("%d bytes, want 16, 24 or 32 (AES-128/192/256): %w", len(k), err)
	}
	return k, nil
}

// GenerateKey returns a new random 32-byte key, base64-encoded as a key
// file holds it.
func GenerateKey() (string, error) {
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return "", fmt.Errorf("gossip: generate key: %w", err)
	}
	return base64.StdEncoding.EncodeToString(k), nil
}
