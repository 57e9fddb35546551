#!/usr/bin/env bash
# check-image.sh is the image build's test step (the last Packer shell
# provisioner): it exits non-zero, and so fails the build, if the finished
# image lacks anything a synod machine needs. It reports every problem, not
# only the first.
#
# Usage: check-image.sh [ROOT]   (default /; a directory checks an unpacked
#                                 root file system, as packer/packer_test.go does)
#
# Environment (defaults match ansible/roles/synod_common):
#   SYNOD_BINARY_PATH  the synod binary            (/usr/local/bin/synod)
#   CHECK_PACKAGES     Debian packages, installed  (containerd runc iptables iproute2 ca-certificates conntrack)
#   CHECK_UNITS        systemd units, present and NOT enabled (the role is
#                      chosen at bootstrap)        (synod-master.service synod-worker.service)
#   CHECK_MODULES      modules loaded at boot      (br_netfilter overlay)
#   CHECK_SYSCTLS      sysctls set to 1 at boot    (net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables)
set -uo pipefail

ROOT=${1:-/}
ROOT=${ROOT%/}
BIN=${SYNOD_BINARY_PATH:-/usr/local/bin/synod}
PACKAGES=${CHECK_PACKAGES:-containerd runc iptables iproute2 ca-certificates conntrack}
UNITS=${CHECK_UNITS:-synod-master.service synod-worker.service}
MODULES=${CHECK_MODULES:-br_netfilter overlay}
SYSCTLS=${CHECK_SYSCTLS:-net.ipv4.ip_forward net.bridge.bridge-nf-call-iptables}

failures=0
fail() {
	echo "check-image: FAIL: $*" >&2
	failures=$((failures + 1))
}
ok() { echo "check-image: ok: $*"; }

# The binary: there, executable, and it runs (a truncated copy or one built
# for another libc fails here rather than at bootstrap).
if [ ! -f "$ROOT$BIN" ]; then
	fail "synod binary $BIN is missing"
elif [ ! -x "$ROOT$BIN" ]; then
	fail "synod binary $BIN is not executable"
elif ! out=$("$ROOT$BIN" --help 2>&1); then
	fail "synod binary $BIN does not run: $(printf '%s' "$out" | head -n 3)"
else
	ok "synod binary $BIN runs"
fi

# The units: present, pointing at the binary, and not enabled.
for unit in $UNITS; do
	path=""
	for dir in /etc/systemd/system /lib/systemd/system /usr/lib/systemd/system; do
		if [ -f "$ROOT$dir/$unit" ]; then
			path=$ROOT$dir/$unit
			break
		fi
	done
	if [ -z "$path" ]; then
		fail "unit $unit is missing"
		continue
	fi
	grep -q "^ExecStart=$BIN " "$path" || fail "unit $unit does not start $BIN"
	state=$(systemctl --root="${ROOT:-/}" is-enabled "$unit" 2>/dev/null)
	case $state in
	disabled) ok "unit $unit installed, not enabled" ;;
	*) fail "unit $unit is '$state', want 'disabled' (the role is chosen at bootstrap)" ;;
	esac
done

# The packages: installed according to the image's own dpkg database.
for pkg in $PACKAGES; do
	status=$(dpkg-query --admindir="$ROOT/var/lib/dpkg" -W -f='${db:Status-Status}' "$pkg" 2>/dev/null)
	if [ "$status" = installed ]; then
		ok "package $pkg installed"
	else
		fail "package $pkg is not installed (status '${status:-unknown}')"
	fi
done

# Kernel modules and sysctls the pod network needs, configured for boot.
for mod in $MODULES; do
	if grep -qsx "$mod" "$ROOT"/etc/modules-load.d/*.conf; then
		ok "module $mod loaded at boot"
	else
		fail "module $mod is not in /etc/modules-load.d"
	fi
	# In the image itself the module must also exist for its kernel.
	if [ -z "$ROOT" ] && ! modprobe -n "$mod" 2>/dev/null; then
		fail "module $mod does not exist for kernel $(uname -r)"
	fi
done
for key in $SYSCTLS; do
	if grep -qsE "^[[:space:]]*$key[[:space:]]*=[[:space:]]*1[[:space:]]*$" "$ROOT"/etc/sysctl.d/*.conf; then
		ok "sysctl $key = 1 at boot"
	else
		fail "sysctl $key = 1 is not in /etc/sysctl.d"
	fi
done

# Nothing of the build machine left behind (packer/scripts/finalize.sh).
if grep -qs ' synod-image-build$' "$ROOT"/root/.ssh/authorized_keys "$ROOT"/home/*/.ssh/authorized_keys; then
	fail "the build SSH key is still authorized"
fi
if ls "$ROOT"/etc/ssh/ssh_host_*_key >/dev/null 2>&1; then
	fail "SSH host keys are baked in (every machine would share them)"
fi

if [ "$failures" -gt 0 ]; then
	echo "check-image: $failures problem(s); the image is incomplete" >&2
	exit 1
fi
echo "check-image: the image has everything a synod machine needs"
