package network

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"sync"
)

// ipamFile is the allocation state inside Config.StateDir.
const ipamFile = "ipam.json"

// ipamState is what is persisted: the podCIDR the allocations belong to,
// pod ID -> IP, and the last IP handed out (allocation continues after it,
// as host-local does, so a released IP is not reused straight away by a new
// pod while stale ARP entries or connections may still point at it).
type ipamState struct {
	PodCIDR string            `json:"podCIDR"`
	Last    string            `json:"last,omitempty"`
	Pods    map[string]string `json:"pods"`
}

// ipam allocates pod IPs from one IPv4 podCIDR and persists every change
// before reporting it, so a crash never hands the same IP to two pods.
type ipam struct {
	mu    sync.Mutex
	path  string
	cidr  *net.IPNet
	first uint32 // first allocatable address (network+2; network+1 is the gateway)
	end   uint32 // last allocatable address (broadcast-1)
	pods  map[string]uint32
	used  map[uint32]string
	last  uint32
}

func newIPAM(stateDir string, cidr *net.IPNet, log *slog.Logger) (*ipam, error) {
	ones, bits := cidr.Mask.Size()
	if bits != 32 {
		return nil, fmt.Errorf("ipam: podCIDR %s is not IPv4", cidr)
	}
	if ones > 29 {
		// /30 leaves one pod, /31 and /32 none: not worth a bridge.
		return nil, fmt.Errorf("ipam: podCIDR %s is too small (at most /29)", cidr)
	}
	base := ip4ToU32(cidr.IP)
	size := uint32(1) << (32 - ones)
	a := &ipam{
		path:  filepath.Join(stateDir, ipamFile),
		cidr:  cidr,
		first: base + 2,
		end:   base + size - 2,
		pods:  map[string]uint32{},
		used:  map[uint32]string{},
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return nil, fmt.Errorf("ipam: state dir: %w", err)
	}
	data, err := os.ReadFile(a.path)
	if errors.Is(err, os.ErrNotExist) {
		return a, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ipam: read state: %w", err)
	}
	var st ipamState
	if err := json.Unmarshal(data, &st); err != nil {
		// Our writes are atomic renames, so a process crash never leaves a
		// torn file; one can only come from a power loss, after which no pod
		// namespace survives anyway. Keep it for inspection and start empty.
		aside := a.path + ".corrupt"
		log.Error("IPAM state unreadable; starting with no allocations", "file", a.path, "movedTo", aside, "err", err)
		if err := os.Rename(a.path, aside); err != nil {
			return nil, fmt.Errorf("ipam: move aside unreadable %s: %w", a.path, err)
		}
		return a, nil
	}
	// Keep every allocation that is still valid in the current podCIDR; one
	// that is not (the node got a different podCIDR) belongs to a pod that
	// cannot keep its IP anyway.
	ids := make([]string, 0, len(st.Pods))
	for id := range st.Pods {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		ip := net.ParseIP(st.Pods[id]).To4()
		if ip == nil || !a.allocatable(ip4ToU32(ip)) {
			log.Warn("dropping pod IP outside podCIDR", "pod", id, "ip", st.Pods[id], "podCIDR", cidr.String())
			continue
		}
		u := ip4ToU32(ip)
		if other, dup := a.used[u]; dup {
			log.Warn("dropping duplicate pod IP", "pod", id, "ip", st.Pods[id], "heldBy", other)
			continue
		}
		a.pods[id] = u
		a.used[u] = id
	}
	if ip := net.ParseIP(st.Last).To4(); ip != nil && a.allocatable(ip4ToU32(ip)) {
		a.last = ip4ToU32(ip)
	}
	return a, nil
}

func (a *ipam) allocatable(u uint32) bool { return u >= a.first && u <= a.end }

// allocate returns podID's IP, allocating one if it has none. fresh reports
// whether the IP was allocated by this call.
func (a *ipam) allocate(podID string) (ip net.IP, fresh bool, err error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if u, ok := a.pods[podID]; ok {
		return u32ToIP4(u), false, nil
	}
	n := a.end - a.first + 1
	start := a.last + 1
	if !a.allocatable(start) {
		start = a.first
	}
	for i := uint32(0); i < n; i++ {
		u := start + i
		if u > a.end {
			u -= n
		}
		if _, taken := a.used[u]; taken {
			continue
		}
		prevLast := a.last
		a.pods[podID], a.used[u], a.last = u, podID, u
		if err := a.saveLocked(); err != nil {
			delete(a.pods, podID)
			delete(a.used, u)
			a.last = prevLast
			return nil, false, err
		}
		return u32ToIP4(u), true, nil
	}
	return nil, false, fmt.Errorf("ipam: no free IP in %s (%d pods)", a.cidr, len(a.pods))
}

// release frees podID's IP; releasing a pod without one is a no-op.
func (a *ipam) release(podID string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	u, ok := a.pods[podID]
	if !ok {
		return nil
	}
	delete(a.pods, podID)
	delete(a.used, u)
	if err := a.saveLocked(); err != nil {
		a.pods[podID], a.used[u] = u, podID
		return err
	}
	return nil
}

func (a *ipam) lookup(podID string) net.IP {
	a.mu.Lock()
	defer a.mu.Unlock()
	if u, ok := a.pods[podID]; ok {
		return u32ToIP4(u)
	}
	return nil
}

func (a *ipam) snapshot() map[string]net.IP {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make(map[string]net.IP, len(a.pods))
	for id, u := range a.pods {
		out[id] = u32ToIP4(u)
	}
	return out
}

func (a *ipam) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return len(a.pods)
}

// saveLocked writes the state to a temporary file and renames it over the
// old one, so a crash of the process leaves either the old or the new state.
// There is deliberately no fsync: it costs ~10 ms per pod, serialised, and
// only protects against power loss, after which no pod network survives to
// need its old IP.
func (a *ipam) saveLocked() error {
	st := ipamState{PodCIDR: a.cidr.String(), Pods: make(map[string]string, len(a.pods))}
	if a.last != 0 {
		st.Last = u32ToIP4(a.last).String()
	}
	for id, u := range a.pods {
		st.Pods[id] = u32ToIP4(u).String()
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("ipam: encode state: %w", err)
	}
	tmp := a.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("ipam: write state: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("ipam: write state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("ipam: close state: %w", err)
	}
	if err := os.Rename(tmp, a.path); err != nil {
		return fmt.Errorf("ipam: replace state: %w", err)
	}
	return nil
}

// remove deletes the persisted state (Cleanup).
func (a *ipam) remove() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.pods = map[string]uint32{}
	a.used = map[uint32]string{}
	a.last = 0
	if err := os.Remove(a.path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("ipam: remove state: %w", err)
	}
	return nil
}

func ip4ToU32(ip net.IP) uint32 { return binary.BigEndian.Uint32(ip.To4()) }

func u32ToIP4(u uint32) net.IP {
	ip := make(net.IP, 4)
	binary.BigEndian.PutUint32(ip, u)
	return ip
}
