package controller

import (
	"sync"
	"time"
)

// Expectations remembers, per controller key, how many creates and deletes a
// sync has issued that the informer has not shown yet. Until they are seen
// (or ExpectationsTimeout passes, for writes whose watch event was lost) the
// controller must not act on its cache again, or it would create or delete
// twice. It is Kubernetes' ControllerExpectations in its simplest form.
type Expectations struct {
	mu  sync.Mutex
	all map[string]*expectation
}

// ExpectationsTimeout bounds how long a key waits for its writes to appear.
const ExpectationsTimeout = 5 * time.Minute

type expectation struct {
	adds, dels int
	at         time.Time
}

// NewExpectations returns an empty set.
func NewExpectations() *Expectations { return &Expectations{all: map[string]*expectation{}} }

// Expect records adds creations and dels deletions issued for key.
func (e *Expectations) Expect(key string, adds, dels int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.all[key]
	if x == nil {
		x = &expectation{}
		e.all[key] = x
	}
	x.adds += adds
	x.dels += dels
	x.at = time.Now()
}

// Observed lowers key's expectations by one creation (add) or deletion.
// Call it from informer handlers, and also when a create or delete failed.
func (e *Expectations) Observed(key string, add bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.all[key]
	if x == nil {
		return
	}
	if add && x.adds > 0 {
		x.adds--
	} else if !add && x.dels > 0 {
		x.dels--
	}
}

// Satisfied reports whether key may be synced from the cache.
func (e *Expectations) Satisfied(key string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	x := e.all[key]
	return x == nil || (x.adds <= 0 && x.dels <= 0) || time.Since(x.at) > ExpectationsTimeout
}

// Forget drops key (the object was deleted).
func (e *Expectations) Forget(key string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.all, key)
}
