# Shared settings of up.sh and down.sh (sourced, not run).
# Each testbed machine is a systemd-nspawn container booted with systemd and
# sshd, in its own network namespace synodtb-<name> wired by a veth to the
# host bridge synodtb0. 10.95.0.0/24 stays clear of the default service range
# 10.96.0.0/12 and pod range 10.244.0.0/16, and of `synod up`'s 10.99.0.0/24.
TB_BRIDGE=${SYNOD_TESTBED_BRIDGE:-synodtb0}
TB_PREFIX=${SYNOD_TESTBED_PREFIX:-10.95.0}
TB_HOST_IP="$TB_PREFIX.1"
TB_STATE=${SYNOD_TESTBED_STATE:-/var/lib/synod-testbed}
TB_CACHE=${SYNOD_TESTBED_CACHE:-/var/cache/synod-testbed}
TB_SUITE=${SYNOD_TESTBED_SUITE:-bookworm}
TB_MIRROR=${SYNOD_TESTBED_MIRROR:-http://deb.debian.org/debian}
TB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TB_INVENTORY=${SYNOD_TESTBED_INVENTORY:-$TB_DIR/../inventory/testbed.ini}
# Everything a master or worker needs is in the rootfs, so the machines need
# no mirror; python3-apt lets Ansible's apt module see it is all there.
# Keep it a superset of synod_common_packages.
TB_PACKAGES=openssh-server,python3,python3-apt,iproute2,systemd,systemd-sysv,dbus,containerd,runc,containernetworking-plugins,iptables,ca-certificates,busybox-static,conntrack,kmod,procps,curl
# The cached rootfs is named by what went into it, so a changed package list
# or suite builds a new one instead of reusing a rootfs that lacks a package.
TB_ROOTFS="$TB_CACHE/rootfs-$(printf '%s %s' "$TB_SUITE" "$TB_PACKAGES" | sha256sum | cut -c1-12)"
# Host-side cgroup v1 controllers a worker's containers need (see up.sh).
TB_CGROUP_CONTROLLERS="cpu cpuacct cpuset memory devices freezer blkio pids"

tb_log() { printf '%s %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
tb_die() { tb_log "error: $*"; exit 1; }
