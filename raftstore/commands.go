package raftstore

import (
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// msgType is the first byte of every raft log entry synod writes; the rest is
// the request, protobuf-encoded. Values are append-only: a log written by an
// older binary must still apply, so never renumber or reuse one.
type msgType byte

const (
	msgPut         msgType = 1 // pb.PutRequest
	msgDeleteRange msgType = 2 // pb.DeleteRangeRequest
	msgTxn         msgType = 3 // pb.TxnRequest
	msgCompact     msgType = 4 // pb.CompactionRequest
	msgLeaseGrant  msgType = 5 // pb.LeaseGrantRequest, ID chosen by the proposer
	msgLeaseRevoke msgType = 6 // pb.LeaseRevokeRequest (client revoke or leader expiry)
	msgMemberAttr  msgType = 7 // pb.Member: a member publishes its name and client URLs
)

func (t msgType) String() string {
	switch t {
	case msgPut:
		return "put"
	case msgDeleteRange:
		return "delete-range"
	case msgTxn:
		return "txn"
	case msgCompact:
		return "compact"
	case msgLeaseGrant:
		return "lease-grant"
	case msgLeaseRevoke:
		return "lease-revoke"
	case msgMemberAttr:
		return "member-attr"
	}
	return fmt.Sprintf("msgType(%d)", byte(t))
}

// marshaler is what every gogo-generated etcd message implements.
type marshaler interface {
	Size() int
	MarshalToSizedBuffer([]byte) (int, error)
}

// encodeCommand builds a log entry: the type byte followed by the message.
func encodeCommand(t msgType, m marshaler) ([]byte, error) {
	buf := make([]byte, 1+m.Size())
	buf[0] = byte(t)
	if _, err := m.MarshalToSizedBuffer(buf[1:]); err != nil {
		return nil, fmt.Errorf("encode %s: %w", t, err)
	}
	return buf, nil
}

// applyResult is what the FSM returns for one entry: the response message and
// a (deterministic) error. Errors are values, not panics: a rejected request
// is still a committed entry that every member rejects the same way.
type applyResult struct {
	resp marshaler
	err  error
}

// newResponse returns an empty response message for the entry type, so a
// forwarded result can be decoded by the member that forwarded it.
func newResponse(t msgType) (interface {
	marshaler
	Unmarshal([]byte) error
}, error) {
	switch t {
	case msgPut:
		return &pb.PutResponse{}, nil
	case msgDeleteRange:
		return &pb.DeleteRangeResponse{}, nil
	case msgTxn:
		return &pb.TxnResponse{}, nil
	case msgCompact:
		return &pb.CompactionResponse{}, nil
	case msgLeaseGrant:
		return &pb.LeaseGrantResponse{}, nil
	case msgLeaseRevoke:
		return &pb.LeaseRevokeResponse{}, nil
	case msgMemberAttr:
		return &pb.MemberUpdateResponse{}, nil
	}
	return nil, fmt.Errorf("unknown message type %d", byte(t))
}

// validateCommand checks that a command received from a peer decodes, before
// it enters the log: the FSM panics on an entry it cannot decode, so a
// malformed forward must be refused here rather than replicated.
func validateCommand(cmd []byte) error {
	if len(cmd) == 0 {
		return fmt.Errorf("empty command")
	}
	var m interface{ Unmarshal([]byte) error }
	switch msgType(cmd[0]) {
	case msgPut:
		m = &pb.PutRequest{}
	case msgDeleteRange:
		m = &pb.DeleteRangeRequest{}
	case msgTxn:
		m = &pb.TxnRequest{}
	case msgCompact:
		m = &pb.CompactionRequest{}
	case msgLeaseGrant:
		m = &pb.LeaseGrantRequest{}
	case msgLeaseRevoke:
		m = &pb.LeaseRevokeRequest{}
	case msgMemberAttr:
		m = &pb.Member{}
	default:
		return fmt.Errorf("unknown message type %d", cmd[0])
	}
	if err := m.Unmarshal(cmd[1:]); err != nil {
		return fmt.Errorf("malformed %s command: %w", msgType(cmd[0]), err)
	}
	return nil
}
