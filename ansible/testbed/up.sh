#!/bin/bash
# up.sh N_MASTERS N_WORKERS: start a testbed of Debian "hosts" on this machine
# for the Ansible playbooks: systemd-nspawn containers m1..mN and w1..wN, each
# booted with systemd and sshd in its own network namespace, bridged on
# synodtb0 (10.95.0.0/24), and write the matching inventory
# (ansible/inventory/testbed.ini). down.sh removes everything again.
#
# Needs root, debootstrap and systemd-container; no host systemd or dbus
# (machines are not registered with machined). The rootfs is debootstrapped
# once into /var/cache/synod-testbed/rootfs-<hash of suite and packages> and
# copied per machine.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

usage() {
	echo "usage: $0 N_MASTERS N_WORKERS   (N_MASTERS >= 1, N_WORKERS >= 0, at most 40 machines)" >&2
	exit 2
}
[ $# -eq 2 ] || usage
[[ $1 =~ ^[0-9]+$ && $2 =~ ^[0-9]+$ ]] || usage
masters=$1 workers=$2
[ "$masters" -ge 1 ] && [ $((masters + workers)) -le 40 ] || usage
[ "$(id -u)" = 0 ] || tb_die "needs root (network namespaces, nspawn)"
for tool in debootstrap systemd-nspawn ip ssh ssh-keygen flock; do
	command -v "$tool" >/dev/null || tb_die "missing $tool (make deps installs it)"
done
if [ -e "$TB_STATE/machines" ]; then
	tb_die "a testbed is already up ($TB_STATE); run down.sh first"
fi

# The rootfs, made once: debootstrap into a temporary dir and rename, under a
# lock, so an interrupted or concurrent run never leaves a half-made rootfs.
mkdir -p "$TB_CACHE"
exec 9>"$TB_CACHE/.lock"
flock 9
if [ ! -d "$TB_ROOTFS" ]; then
	tb_log "debootstrap $TB_SUITE into $TB_ROOTFS (once; about 2 minutes)"
	rm -rf "$TB_ROOTFS.tmp"
	debootstrap --variant=minbase --include="$TB_PACKAGES" "$TB_SUITE" "$TB_ROOTFS.tmp" "$TB_MIRROR" \
		>"$TB_CACHE/debootstrap.log" 2>&1 || tb_die "debootstrap failed; see $TB_CACHE/debootstrap.log"
	mv "$TB_ROOTFS.tmp" "$TB_ROOTFS"
	# Rootfs caches of other package lists are stale now.
	for old in "$TB_CACHE"/rootfs "$TB_CACHE"/rootfs-*; do
		case "$old" in "$TB_ROOTFS" | *.tmp) continue ;; esac
		if [ -d "$old" ]; then rm -rf "$old"; fi
	done
fi
flock -u 9

mkdir -p "$TB_STATE/machines" "$TB_STATE/run"
# If anything below fails, leave nothing half-up behind.
trap 'rc=$?; if [ $rc -ne 0 ]; then tb_log "up failed; tearing down"; "$TB_DIR/down.sh" || true; fi' EXIT

if [ ! -f "$TB_STATE/id_ed25519" ]; then
	ssh-keygen -q -t ed25519 -N '' -C synod-testbed -f "$TB_STATE/id_ed25519"
fi

# The host bridge, and NAT so that machines could reach out (not needed for
# the bootstrap: the rootfs has every package).
if ! ip link show "$TB_BRIDGE" >/dev/null 2>&1; then
	ip link add "$TB_BRIDGE" type bridge
	ip addr add "$TB_HOST_IP/24" dev "$TB_BRIDGE"
	ip link set "$TB_BRIDGE" up
fi

# prepare_machine NAME: a private copy of the rootfs with its own identity
# (machine-id, ssh host keys) and the testbed's SSH key for root.
prepare_machine() {
	local name=$1 root="$TB_STATE/machines/$1"
	cp -a "$TB_ROOTFS" "$root"
	systemd-id128 new >"$root/etc/machine-id" 2>/dev/null || od -An -N16 -tx1 /dev/urandom | tr -d ' \n' >"$root/etc/machine-id"
	echo "$name" >"$root/etc/hostname"
	rm -f "$root"/etc/ssh/ssh_host_*
	ssh-keygen -q -A -f "$root"
	install -d -m 0700 "$root/root/.ssh"
	install -m 0600 "$TB_STATE/id_ed25519.pub" "$root/root/.ssh/authorized_keys"
	# Nothing in a machine needs a console login or the distribution's
	# containerd (a synod worker runs its own).
	rm -f "$root/etc/systemd/system/multi-user.target.wants/containerd.service"
	ln -sf /dev/null "$root/etc/systemd/system/console-getty.service"
	ln -sf /dev/null "$root/etc/systemd/system/systemd-networkd-wait-online.service"
	cat >"$root/etc/systemd/system/synodtb-cgroups.service" <<-'UNIT'
	# testbed only (ansible/testbed/up.sh): writable cgroup controllers for runc
	[Unit]
	Description=synod testbed: writable cgroup controllers
	DefaultDependencies=no
	ConditionPathIsDirectory=/var/lib/synodtb-cgroup
	Before=sysinit.target synod-worker.service
	[Service]
	Type=oneshot
	RemainAfterExit=yes
	ExecStart=/bin/sh -c 'for d in /var/lib/synodtb-cgroup/*; do mount --bind "$d" "/sys/fs/cgroup/$(basename "$d")"; done'
	[Install]
	WantedBy=sysinit.target
	UNIT
	ln -sf ../synodtb-cgroups.service "$root/etc/systemd/system/sysinit.target.wants/synodtb-cgroups.service"
}

# netns_up NAME IP: the machine's network namespace, with eth0 on the bridge.
netns_up() {
	local name=$1 ip=$2 ns="synodtb-$1" veth="tb-$1"
	ip netns add "$ns"
	ip link add "$veth" type veth peer name "tbp-$name"
	ip link set "$veth" master "$TB_BRIDGE" up
	ip link set "tbp-$name" netns "$ns"
	ip -n "$ns" link set "tbp-$name" name eth0
	ip -n "$ns" link set lo up
	ip -n "$ns" addr add "$ip/24" dev eth0
	ip -n "$ns" link set eth0 up
	ip -n "$ns" route add default via "$TB_HOST_IP"
}

# cgroups_up NAME: a worker runs containers (runc), which need writable
# cgroup v1 controllers; nspawn mounts them read-only (and after any --bind,
# so a bind cannot replace them). The machine gets its own subtree
# synodtb/NAME in each controller and is started inside it, so its cgroup
# namespace is rooted there; nspawn binds the subtrees to
# /var/lib/synodtb-cgroup/, and synodtb-cgroups.service (see
# prepare_machine) mounts them over /sys/fs/cgroup/ early at boot.
cgroups_up() {
	local name=$1 c d
	for c in $TB_CGROUP_CONTROLLERS; do
		d="/sys/fs/cgroup/$c/synodtb/$name"
		[ -d "/sys/fs/cgroup/$c" ] || continue
		mkdir -p "$d"
		if [ "$c" = cpuset ]; then
			# A new cpuset is empty; tasks may join only once it has CPUs and memory nodes.
			cat /sys/fs/cgroup/cpuset/cpuset.cpus >"/sys/fs/cgroup/cpuset/synodtb/cpuset.cpus"
			cat /sys/fs/cgroup/cpuset/cpuset.mems >"/sys/fs/cgroup/cpuset/synodtb/cpuset.mems"
			cat /sys/fs/cgroup/cpuset/cpuset.cpus >"$d/cpuset.cpus"
			cat /sys/fs/cgroup/cpuset/cpuset.mems >"$d/cpuset.mems"
		fi
	done
}

# start_machine NAME ROLE: boot the machine in the background; its nspawn pid
# goes to run/NAME.pid (down.sh kills it by that pid).
start_machine() {
	local name=$1 role=$2 root="$TB_STATE/machines/$1" args=() c
	args=(-D "$root" -M "$name" --register=no --keep-unit --boot --console=passive
		--network-namespace-path="/run/netns/synodtb-$name" --capability=all
	)
	[ -d /lib/modules ] && args+=(--bind-ro=/lib/modules)
	if [ "$role" = worker ]; then
		# Pods: runc, overlayfs, iptables and network namespaces inside the
		# machine need the devices and cgroups a plain container hides.
		cgroups_up "$name"
		for d in /dev/fuse /dev/net/tun /dev/kmsg; do
			[ -e "$d" ] && args+=("--bind=$d")
		done
		for c in $TB_CGROUP_CONTROLLERS; do
			[ -d "/sys/fs/cgroup/$c/synodtb/$name" ] && args+=("--bind=/sys/fs/cgroup/$c/synodtb/$name:/var/lib/synodtb-cgroup/$c")
		done
	fi
	(
		if [ "$role" = worker ]; then
			for c in $TB_CGROUP_CONTROLLERS; do
				[ -d "/sys/fs/cgroup/$c/synodtb/$name" ] && echo $BASHPID >"/sys/fs/cgroup/$c/synodtb/$name/cgroup.procs"
			done
		fi
		# SYSTEMD_SECCOMP=0: containerd and runc use syscalls (keyctl, bpf,
		# mount of new namespaces) that nspawn's default filter denies.
		SYSTEMD_SECCOMP=0 SYSTEMD_NSPAWN_API_VFS_WRITABLE=network exec systemd-nspawn "${args[@]}"
	) </dev/null >"$TB_STATE/run/$name.log" 2>&1 &
	echo $! >"$TB_STATE/run/$name.pid"
}

names=() ips=() roles=()
for i in $(seq 1 "$masters"); do names+=("m$i"); ips+=("$TB_PREFIX.$((10 + i))"); roles+=(master); done
for i in $(seq 1 "$workers"); do names+=("w$i"); ips+=("$TB_PREFIX.$((100 + i))"); roles+=(worker); done

for idx in "${!names[@]}"; do
	name=${names[$idx]}
	tb_log "machine $name (${roles[$idx]}) at ${ips[$idx]}"
	prepare_machine "$name"
	netns_up "$name" "${ips[$idx]}"
	echo "${ips[$idx]} ${roles[$idx]}" >"$TB_STATE/run/$name.info"
	start_machine "$name" "${roles[$idx]}"
done

# Wait (bounded) for sshd in every machine.
ssh_opts=(-i "$TB_STATE/id_ed25519" -o BatchMode=yes -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null
	-o ConnectTimeout=2 -o LogLevel=ERROR)
for idx in "${!names[@]}"; do
	name=${names[$idx]} ip=${ips[$idx]}
	ok=
	for _ in $(seq 1 90); do
		if ! kill -0 "$(cat "$TB_STATE/run/$name.pid")" 2>/dev/null; then
			tb_die "machine $name exited; see $TB_STATE/run/$name.log"
		fi
		if ssh "${ssh_opts[@]}" "root@$ip" true 2>/dev/null; then ok=1; break; fi
		sleep 1
	done
	[ -n "$ok" ] || tb_die "no ssh on $name ($ip) after 90s; see $TB_STATE/run/$name.log"
done

mkdir -p "$(dirname "$TB_INVENTORY")"
{
	echo "# written by ansible/testbed/up.sh $masters $workers; removed by down.sh"
	echo "[masters]"
	for idx in "${!names[@]}"; do [ "${roles[$idx]}" = master ] && echo "${names[$idx]} ansible_host=${ips[$idx]}"; done
	echo
	echo "[workers]"
	for idx in "${!names[@]}"; do [ "${roles[$idx]}" = worker ] && echo "${names[$idx]} ansible_host=${ips[$idx]}"; done
	echo
	echo "[all:vars]"
	echo "ansible_user=root"
	echo "ansible_ssh_private_key_file=$TB_STATE/id_ed25519"
	echo "ansible_ssh_common_args='-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null'"
	echo "synod_cluster_name=testbed"
	echo "# the testbed's rootfs has every package and no mirror"
	echo "synod_common_apt_update=false"
} >"$TB_INVENTORY"
echo "$TB_INVENTORY" >"$TB_STATE/inventory-path"
tb_log "testbed up: $masters masters, $workers workers; inventory $TB_INVENTORY"
