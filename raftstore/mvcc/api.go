package mvcc

import (
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Errors returned by Store. Callers map them onto etcd's rpctypes errors.
var (
	ErrCompacted      = errors.New("mvcc: required revision has been compacted")
	ErrFutureRev      = errors.New("mvcc: required revision is a future revision")
	ErrEmptyKey       = errors.New("mvcc: key is not provided")
	ErrKeyNotFound    = errors.New("mvcc: key not found")     // put with ignore_value/ignore_lease on a missing key
	ErrValueProvided  = errors.New("mvcc: value is provided") // ignore_value with a value
	ErrLeaseProvided  = errors.New("mvcc: lease is provided") // ignore_lease with a lease
	ErrDuplicateKey   = errors.New("mvcc: duplicate key given in txn request")
	ErrTooManyOps     = errors.New("mvcc: too many operations in txn request")
	ErrLeaseNotFound  = errors.New("mvcc: requested lease not found")
	ErrLeaseExists    = errors.New("mvcc: lease already exists")
	ErrSnapshotFormat = errors.New("mvcc: bad snapshot")
)

// MaxTxnOps is etcd's default --max-txn-ops.
const MaxTxnOps = 128

// Event is one change, as sent to watchers. PrevKv is the key's previous
// value (nil if it did not exist or was compacted).
type Event = mvccpb.Event

// Lease is a granted lease as the replicated state knows it. Expiry times are
// not part of it: the raft leader decides expiry and applies a revoke.
type Lease struct {
	ID  int64
	TTL int64 // granted TTL in seconds
}

// Record is one stored revision of one key, for export to an etcd-format
// snapshot and import from one. Sub is the sub-revision within the main
// revision (KV.ModRevision). A tombstone has only Key and ModRevision set.
type Record struct {
	KV        mvccpb.KeyValue
	Sub       int64
	Tombstone bool
}

// View is a cheap, immutable copy of the state (copy-on-write), taken on the
// FSM goroutine and written out concurrently with further mutations.
type View interface {
	// WriteTo writes the state in the package's own snapshot format.
	WriteTo(w io.Writer) (int64, error)
	// Records calls fn for every stored revision of every key, in revision
	// order (main, then sub), including tombstones; stops on the first error.
	Records(fn func(Record) error) error
	Leases() []Lease
	Rev() int64
	CompactRev() int64
}

// compile-time: the real implementation lives in store.go.
var _ interface {
	Range(*pb.RangeRequest) (*pb.RangeResponse, error)
	Put(*pb.PutRequest) (*pb.PutResponse, error)
	DeleteRange(*pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error)
	Txn(*pb.TxnRequest) (*pb.TxnResponse, error)
	Compact(rev int64) error
	LeaseGrant(id, ttl int64) error
	LeaseRevoke(id int64) error
	LeaseInfo(id int64) (ttl int64, keys [][]byte, err error)
	Leases() []Lease
	Rev() int64
	CompactRev() int64
	Events(fromRev int64, key, end []byte, limit int) ([]*Event, int64, error)
	Changed() <-chan struct{}
	View() View
	Restore(r io.Reader) error
	Load(rev, compactRev int64, recs []Record, leases []Lease) error
} = (*Store)(nil)
