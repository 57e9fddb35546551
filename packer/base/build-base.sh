#!/usr/bin/env bash
# build-base.sh builds the local Debian 12 base disk that packer/synod.pkr.hcl
# starts from when no cloud image can be downloaded: a debootstrap root file
# system with a kernel, sshd, python3 (for Ansible) and DHCP networking, on an
# MBR-partitioned qcow2 disk, plus the kernel and initrd next to it so QEMU can
# boot it directly (-kernel/-initrd/-append; the Packer build then installs
# GRUB so the finished image boots on its own).
#
# Usage: packer/base/build-base.sh [OUT_DIR]     (default: out/image/base)
#
# Writes OUT_DIR/{base.qcow2,vmlinuz,initrd.img,build_key,build_key.pub,
# root-uuid,stamp}. The result is cached: a second run with the same script,
# package list and mirror does nothing (delete OUT_DIR or set FORCE=1 to
# rebuild). build_key is a key generated for the build only: its public half
# is root's authorized key in the base disk, and the Packer build removes it
# from the finished image.
#
# Environment:
#   DEBIAN_MIRROR           Debian mirror URL (default: the first bookworm URI in
#                           the host's apt sources)
#   DEBIAN_SECURITY_MIRROR  security mirror written into the image's apt sources
#                           (default: the host's bookworm-security URI, if any)
#   ROOT_SIZE               size of the root file system (default 8G; sparse)
#   FORCE=1                 rebuild even if the cache is current
#
# Needs root (debootstrap and device nodes), debootstrap, mke2fs, qemu-img and
# ssh-keygen. It mounts nothing itself and needs no loop devices: the file
# system is made from the directory with `mke2fs -d` and written into the
# partition with dd.
set -euo pipefail

SUITE=bookworm
OUT=${1:-out/image/base}
ROOT_SIZE=${ROOT_SIZE:-8G}
# What the base needs to boot as a VM and be provisioned over SSH by Ansible.
# Everything synod itself needs comes from the Ansible role, not from here.
PACKAGES=(
	systemd-sysv udev dbus kmod procps iproute2 systemd-resolved
	linux-image-amd64 initramfs-tools grub-pc
	openssh-server python3 python3-apt sudo ca-certificates
)

die() {
	echo "build-base: $*" >&2
	exit 1
}

# apt_uri prints the first URI of a deb822 or one-line apt source whose suite
# matches $1, so the base uses the same mirror the host's apt already reaches.
apt_uri() {
	local suite=$1 f
	for f in /etc/apt/sources.list.d/*.sources; do
		[ -r "$f" ] || continue
		awk -v s="$suite" '
			/^[[:space:]]*$/ { if (uri != "" && hit) { print uri; exit } uri=""; hit=0; next }
			/^URIs:/ { uri=$2 }
			/^Suites:/ { for (i = 2; i <= NF; i++) if ($i == s) hit=1 }
			END { if (uri != "" && hit) print uri }' "$f" | head -n1
	done | head -n1
	for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
		[ -r "$f" ] || continue
		awk -v s="$suite" '$1 == "deb" && $3 == s { print $2; exit }' "$f"
	done | head -n1
}

[ "$(id -u)" = 0 ] || die "needs root (debootstrap creates device nodes and root-owned files)"
for tool in debootstrap mke2fs qemu-img ssh-keygen; do
	command -v "$tool" >/dev/null || die "missing $tool (make deps installs it)"
done

MIRROR=${DEBIAN_MIRROR:-$(apt_uri "$SUITE" | head -n1)}
[ -n "$MIRROR" ] || die "no Debian mirror: set DEBIAN_MIRROR or add a $SUITE apt source"
SECURITY_MIRROR=${DEBIAN_SECURITY_MIRROR:-$(apt_uri "$SUITE-security" | head -n1)}

mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
# The cache key covers everything that changes the disk's contents.
stamp=$(
	{
		cat "$0"
		echo "$MIRROR $SECURITY_MIRROR $ROOT_SIZE ${PACKAGES[*]}"
	} | sha256sum | cut -d' ' -f1
)
if [ "${FORCE:-0}" != 1 ] && [ -f "$OUT/stamp" ] && [ "$(cat "$OUT/stamp")" = "$stamp" ] &&
	[ -f "$OUT/base.qcow2" ] && [ -f "$OUT/vmlinuz" ] && [ -f "$OUT/initrd.img" ] && [ -f "$OUT/build_key" ]; then
	echo "build-base: $OUT/base.qcow2 is current (cached)"
	exit 0
fi
rm -f "$OUT/stamp" "$OUT/base.qcow2"

WORK="$OUT/work"
ROOT="$WORK/root"
cleanup() {
	# debootstrap mounts proc and sys inside the root while it runs; a failed
	# run can leave them, and rm must never descend into a live /proc.
	local m
	for m in "$ROOT/dev/pts" "$ROOT/proc" "$ROOT/sys"; do
		if mountpoint -q "$m" 2>/dev/null; then umount -l "$m" || true; fi
	done
	rm -rf "$WORK"
}
trap cleanup EXIT
cleanup
mkdir -p "$WORK"

start=$(date +%s)
echo "build-base: debootstrap $SUITE from $MIRROR into $ROOT"
include=$(
	IFS=,
	echo "${PACKAGES[*]}"
)
DEBIAN_FRONTEND=noninteractive debootstrap --variant=minbase --include="$include" \
	"$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 || {
	tail -n 30 "$WORK/debootstrap.log" >&2
	die "debootstrap failed (log above)"
}

uuid=$(cat /proc/sys/kernel/random/uuid)

echo "synod-image" >"$ROOT/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tsynod-image\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$ROOT/etc/hosts"
echo "UUID=$uuid / ext4 errors=remount-ro 0 1" >"$ROOT/etc/fstab"
{
	echo "deb $MIRROR $SUITE main"
	echo "deb $MIRROR $SUITE-updates main"
	if [ -n "$SECURITY_MIRROR" ]; then echo "deb $SECURITY_MIRROR $SUITE-security main"; fi
} >"$ROOT/etc/apt/sources.list"

# DHCP on whatever the first NIC is called (ens3 under QEMU, eth0 elsewhere).
cat >"$ROOT/etc/systemd/network/80-dhcp.network" <<'EOF'
[Match]
Name=en* eth*

[Network]
DHCP=yes
EOF
chroot "$ROOT" systemctl enable systemd-networkd.service systemd-resolved.service >/dev/null 2>&1
# A blank root password is never set: root logs in with the build key only.
mkdir -p "$ROOT/root/.ssh"
chmod 700 "$ROOT/root/.ssh"
rm -f "$OUT/build_key" "$OUT/build_key.pub"
ssh-keygen -q -t ed25519 -N '' -C synod-image-build -f "$OUT/build_key"
cp "$OUT/build_key.pub" "$ROOT/root/.ssh/authorized_keys"
chmod 600 "$ROOT/root/.ssh/authorized_keys"
# Packages the role installs (busybox-static, for one) trigger an initrd
# rebuild, which takes minutes under software emulation and changes nothing
# the boot needs: skip it during the build. packer/scripts/finalize.sh turns
# it back on, so kernel updates on the machine get their initrd as usual.
sed -i "s/^update_initramfs=.*/update_initramfs=no/" "$ROOT/etc/initramfs-tools/update-initramfs.conf"
# Keep the apt cache small in the disk; the packages are on the mirror.
chroot "$ROOT" apt-get clean

kernel=$(ls "$ROOT"/boot/vmlinuz-* | sort -V | tail -n1)
initrd=$(ls "$ROOT"/boot/initrd.img-* | sort -V | tail -n1)
[ -f "$kernel" ] && [ -f "$initrd" ] || die "no kernel or initrd in $ROOT/boot"
cp "$kernel" "$OUT/vmlinuz"
cp "$initrd" "$OUT/initrd.img"
echo "$uuid" >"$OUT/root-uuid"

# The disk: an MBR with one bootable Linux partition starting at 1 MiB (the
# gap GRUB's core image needs), holding an ext4 made from the directory.
echo "build-base: making the disk"
mke2fs -q -F -t ext4 -L synod-root -U "$uuid" -d "$ROOT" "$WORK/root.ext4" "$ROOT_SIZE"
part_bytes=$(stat -c %s "$WORK/root.ext4")
part_start=2048
part_sectors=$((part_bytes / 512))
truncate -s $(((part_start * 512) + part_bytes)) "$WORK/disk.raw"
le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $((($1 >> 8) & 255)) $((($1 >> 16) & 255)) $((($1 >> 24) & 255)); }
# Partition entry 1: bootable, CHS fields unused (0xfe 0xff 0xff), type 0x83.
entry="\\x80\\xfe\\xff\\xff\\x83\\xfe\\xff\\xff$(le32 $part_start)$(le32 $part_sectors)"
printf "$entry" | dd of="$WORK/disk.raw" bs=1 seek=446 conv=notrunc status=none
printf '\x55\xaa' | dd of="$WORK/disk.raw" bs=1 seek=510 conv=notrunc status=none
dd if="$WORK/root.ext4" of="$WORK/disk.raw" bs=1M seek=1 conv=notrunc,sparse status=none
qemu-img convert -f raw -O qcow2 "$WORK/disk.raw" "$OUT/base.qcow2.tmp"
mv "$OUT/base.qcow2.tmp" "$OUT/base.qcow2"
echo "$stamp" >"$OUT/stamp"
echo "build-base: $OUT/base.qcow2 built in $(($(date +%s) - start)) s"
