package gossip

import (
	"encoding/json"
	"fmt"
	"net"
	"strconv"

	"github.com/hashicorp/memberlist"
)

// State is a member's state as this member sees it.
type State string

// Member states. Suspect means a probe went unanswered and the pool is
// waiting for the member to refute it; dead means it was not refuted in
// time; left means the member said goodbye.
const (
	StateAlive   State = "alive"
	StateSuspect State = "suspect"
	StateDead    State = "dead"
	StateLeft    State = "left"
)

// Member is one member of the pool.
type Member struct {
	Name         string
	Addr         string // IP
	Port         int
	Role         string
	APIServerURL string
	NodeName     string
	Version      string
	State        State
}

// Address is the member's gossip HOST:PORT.
func (m Member) Address() string { return net.JoinHostPort(m.Addr, strconv.Itoa(m.Port)) }

// meta is what a member publishes about itself in memberlist's node meta.
// Short keys keep it far below memberlist.MetaMaxSize.
type meta struct {
	Role     string `json:"r"`
	API      string `json:"a,omitempty"`
	NodeName string `json:"n,omitempty"`
	Version  string `json:"v,omitempty"`
	// Leaving is set just before a graceful leave: memberlist reports dead
	// and left members alike (NotifyLeave's node carries no state), so the
	// member says goodbye in its metadata first, as serf does with its
	// leave intent.
	Leaving bool `json:"l,omitempty"`
}

func encodeMeta(c Config, leaving bool) ([]byte, error) {
	b, err := json.Marshal(meta{Role: c.Role, API: c.APIServerURL, NodeName: c.NodeName, Version: c.Version, Leaving: leaving})
	if err != nil {
		return nil, fmt.Errorf("gossip: encode metadata: %w", err)
	}
	if len(b) > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("gossip: metadata is %d bytes, memberlist allows %d: shorten the API URL, node name or version",
			len(b), memberlist.MetaMaxSize)
	}
	return b, nil
}

// memberOf converts a memberlist node, in the given state (memberlist's
// Node.State is never filled in: its state lives in a private struct).
// Metadata that does not decode (some other software on the port) leaves
// the fields empty. It also reports whether the member announced a leave.
func memberOf(n *memberlist.Node, s State) (Member, bool) {
	var md meta
	_ = json.Unmarshal(n.Meta, &md)
	return Member{
		Name: n.Name, Addr: n.Addr.String(), Port: int(n.Port),
		Role: md.Role, APIServerURL: md.API, NodeName: md.NodeName, Version: md.Version,
		State: s,
	}, md.Leaving
}
