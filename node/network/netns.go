package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// NetNSDir is where named network namespaces live; it is the directory
// `ip netns` uses, so `ip netns exec NAME ...` works on ours.
const NetNSDir = "/run/netns"

// NetNSPath returns the path of the named network namespace.
func NetNSPath(name string) string { return filepath.Join(NetNSDir, name) }

// NewNetNS creates a new, empty network namespace bind-mounted at
// /run/netns/NAME and returns its path. Other processes (runc, ip netns exec)
// join it by that path. If a namespace of that name already exists it is
// reused, so a restarted kubelet can call NewNetNS again for a running pod.
func NewNetNS(name string) (string, error) {
	if name == "" || strings.ContainsAny(name, "/\x00") || name == "." || name == ".." {
		return "", fmt.Errorf("new netns: invalid name %q", name)
	}
	if err := ensureSharedNetNSDir(); err != nil {
		return "", err
	}
	path := NetNSPath(name)
	if isNetNS(path) {
		return path, nil
	}
	// A plain file left over by a crash between create and mount is stale.
	_ = os.Remove(path)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", fmt.Errorf("new netns %s: create mount point: %w", name, err)
	}
	f.Close()

	// unshare switches only the calling thread, so do it on a locked
	// thread of a goroutine that exits without unlocking: the runtime then
	// throws the thread away instead of reusing it in the wrong namespace.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		self := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		if err := unix.Mount(self, path, "none", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind mount %s: %w", self, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return "", fmt.Errorf("new netns %s: %w", name, err)
	}
	return path, nil
}

// DeleteNetNS unmounts and removes the named network namespace. The kernel
// frees the namespace (and the veth ends in it) once no process uses it.
// Deleting a namespace that does not exist is not an error.
func DeleteNetNS(name string) error {
	if name == "" || strings.ContainsAny(name, "/\x00") {
		return fmt.Errorf("delete netns: invalid name %q", name)
	}
	path := NetNSPath(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("delete netns %s: unmount: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete netns %s: %w", name, err)
	}
	return nil
}

// ensureSharedNetNSDir makes /run/netns a shared mount point, as `ip netns
// add` does, so namespace mounts made later propagate into mount namespaces
// cloned from this one (containerd shims, for instance).
func ensureSharedNetNSDir() error {
	if err := os.MkdirAll(NetNSDir, 0o755); err != nil {
		return fmt.Errorf("netns dir: %w", err)
	}
	err := unix.Mount("", NetNSDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if err == nil {
		return nil
	}
	if !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("netns dir: make shared: %w", err)
	}
	// EINVAL: not a mount point yet. Bind it onto itself, then retry.
	if err := unix.Mount(NetNSDir, NetNSDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("netns dir: bind onto itself: %w", err)
	}
	if err := unix.Mount("", NetNSDir, "none", unix.MS_SHARED|unix.MS_REC, ""); err != nil {
		return fmt.Errorf("netns dir: make shared: %w", err)
	}
	return nil
}

// isNetNS reports whether path is a mounted network namespace (nsfs).
func isNetNS(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// inNetNS runs fn on an OS thread switched into the network namespace at
// path ("" means the caller's own). Sockets, netlink handles, /proc/sys/net
// files and child processes (iptables) created by fn belong to that
// namespace. fn must not start goroutines that expect to stay in it.
func inNetNS(path string, fn func() error) error {
	if path == "" {
		return fn()
	}
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open netns %s: %w", path, err)
	}
	defer target.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		self := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
		orig, err := os.Open(self)
		if err != nil {
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter netns %s: %w", path, err)
			return
		}
		ferr := fn()
		// Only a thread that made it back may be reused; otherwise it stays
		// locked and dies with this goroutine.
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err == nil {
			runtime.UnlockOSThread()
		}
		errc <- ferr
	}()
	return <-errc
}
