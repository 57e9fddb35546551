#!/usr/bin/env bash
# bootloader.sh (Packer shell provisioner, qemu.debootstrap only) installs
# GRUB on the disk the root file system lives on, so the finished image boots
# on its own: during the build QEMU starts the base's kernel directly
# (-kernel/-initrd), which a machine booted from the image will not do. The
# console goes to both the screen and the first serial port, which is all a
# headless VM has.
set -euo pipefail

root_dev=$(findmnt -no SOURCE /)
disk=/dev/$(lsblk -no PKNAME "$root_dev")
[ -b "$disk" ] || {
	echo "bootloader: no disk found for $root_dev" >&2
	exit 1
}

mkdir -p /etc/default/grub.d
cat >/etc/default/grub.d/synod.cfg <<'CFG'
# written by packer/scripts/bootloader.sh
GRUB_TIMEOUT=1
GRUB_CMDLINE_LINUX_DEFAULT=""
GRUB_CMDLINE_LINUX="console=tty0 console=ttyS0,115200n8"
GRUB_TERMINAL="console serial"
GRUB_SERIAL_COMMAND="serial --speed=115200"
CFG

grub-install --target=i386-pc "$disk"
update-grub
echo "bootloader: GRUB installed on $disk (root $root_dev)"
