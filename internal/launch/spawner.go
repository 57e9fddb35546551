package launch

import (
	"os/exec"
	"runtime"
	"sync"
)

// threadSpawner starts processes from one OS thread that stays locked to a
// goroutine until close. Pdeathsig is tied to the thread that forked the
// child, not to the process: started from an ordinary goroutine, a master
// gets SIGKILLed whenever the Go runtime retires that thread, which it does
// for every thread a goroutine leaves locked (netns code in the same
// process does exactly that). One long-lived locked thread keeps Pdeathsig
// meaning "the parent died".
type threadSpawner struct {
	reqs      chan spawnRequest
	closed    chan struct{}
	closeOnce sync.Once
	done      chan struct{}
}

type spawnRequest struct {
	cmd *exec.Cmd
	err chan error
}

func newThreadSpawner() *threadSpawner {
	s := &threadSpawner{reqs: make(chan spawnRequest), closed: make(chan struct{}), done: make(chan struct{})}
	go s.loop()
	return s
}

func (s *threadSpawner) loop() {
	runtime.LockOSThread()
	defer close(s.done)
	// Unlocked only once every child is gone (close is called after the
	// masters are reaped), so the thread goes back to the pool, not away.
	defer runtime.UnlockOSThread()
	for {
		select {
		case r := <-s.reqs:
			r.err <- r.cmd.Start()
		case <-s.closed:
			return
		}
	}
}

// start runs cmd.Start on the spawner's thread; ErrStopped once closed.
func (s *threadSpawner) start(cmd *exec.Cmd) error {
	r := spawnRequest{cmd: cmd, err: make(chan error, 1)}
	select {
	case s.reqs <- r:
		return <-r.err
	case <-s.closed:
		return ErrStopped
	}
}

// close stops the spawner; call it when no child started by it runs.
func (s *threadSpawner) close() {
	s.closeOnce.Do(func() { close(s.closed) })
	<-s.done
}
