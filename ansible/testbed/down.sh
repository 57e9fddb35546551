#!/bin/bash
# down.sh: stop and remove the testbed up.sh made: each machine's nspawn and
# container init (killed by the pids up.sh recorded), network namespaces and
# veths, the bridge, the worker cgroups, machine copies and the inventory. The
# cached rootfs stays for the next up.sh. Safe to run twice or after a failed up.
set -uo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ "$(id -u)" = 0 ] || tb_die "needs root"

# descendants PID: PID's children, grandchildren, ... (from /proc, no pgrep -f).
descendants() {
	local p c
	for p in "$@"; do
		for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do
			echo "$c"
			descendants "$c"
		done
	done
}

if [ -d "$TB_STATE/run" ]; then
	pids=()
	for f in "$TB_STATE"/run/*.pid; do
		[ -e "$f" ] || continue
		pid=$(cat "$f")
		# Only a process that still is our nspawn (pids get reused).
		if [ -n "$pid" ] && grep -qa systemd-nspawn "/proc/$pid/cmdline" 2>/dev/null; then
			pids+=("$pid")
		fi
	done
	if [ ${#pids[@]} -gt 0 ]; then
		# The container inits (children of nspawn) are the roots of the
		# machines' pid namespaces: killing one kills everything inside it.
		# shellcheck disable=SC2046
		inner=$(descendants "${pids[@]}")
		tb_log "stopping machines (nspawn pids ${pids[*]})"
		kill -KILL $inner "${pids[@]}" 2>/dev/null
		for _ in $(seq 1 100); do
			alive=
			for p in "${pids[@]}" $inner; do kill -0 "$p" 2>/dev/null && alive=1; done
			[ -z "$alive" ] && break
			sleep 0.1
		done
		[ -z "$alive" ] || tb_log "warning: some machine processes still alive"
	fi
fi

for f in "$TB_STATE"/run/*.info; do
	[ -e "$f" ] || continue
	name=$(basename "$f" .info)
	ip netns delete "synodtb-$name" 2>/dev/null
	ip link delete "tb-$name" 2>/dev/null
	for c in $TB_CGROUP_CONTROLLERS; do
		d="/sys/fs/cgroup/$c/synodtb/$name"
		[ -d "$d" ] || continue
		# Deepest first: a cgroup can be removed only once its children are.
		find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
done
for c in $TB_CGROUP_CONTROLLERS; do rmdir "/sys/fs/cgroup/$c/synodtb" 2>/dev/null; done
ip link delete "$TB_BRIDGE" 2>/dev/null

if [ -d "$TB_STATE/machines" ]; then
	if grep -q " $TB_STATE/machines" /proc/self/mountinfo; then
		tb_die "mounts left under $TB_STATE/machines; not removing it"
	fi
	rm -rf "$TB_STATE/machines"
fi
if [ -f "$TB_STATE/inventory-path" ]; then
	inv=$(cat "$TB_STATE/inventory-path")
	# site.yml's CA, keys and kubeconfigs for the testbed live next to it.
	rm -rf "$inv" "$(dirname "$inv")/synod-testbed" "$TB_STATE/inventory-path"
fi
rm -rf "$TB_STATE/run"
tb_log "testbed down"
