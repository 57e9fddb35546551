#!/usr/bin/env bash
# finalize.sh (Packer shell provisioner) takes what belongs to the build
# machine out of the image, so every VM booted from it is its own machine and
# only the operator's key gets in:
#   - the build key (comment "synod-image-build", from build-base.sh or the
#     cloud-init seed) leaves every authorized_keys;
#   - OPERATOR_SSH_PUBLIC_KEY, if set, becomes root's authorized key;
#   - SSH host keys go, and a first-boot unit makes new ones;
#   - /etc/machine-id is emptied, so systemd makes a new one at first boot
#     (DHCP client ids and node identities derive from it);
#   - apt's lists and cache go (the bootstrap refreshes them);
#   - cloud-init, if present, forgets this boot and runs again on the VM.
# Packer keeps its one SSH connection open, so removing the key and host keys
# does not cut the build off.
set -euo pipefail

if [ -n "${OPERATOR_SSH_PUBLIC_KEY:-}" ]; then
	install -d -m 0700 /root/.ssh
	touch /root/.ssh/authorized_keys
	chmod 0600 /root/.ssh/authorized_keys
	grep -qxF -- "$OPERATOR_SSH_PUBLIC_KEY" /root/.ssh/authorized_keys ||
		printf '%s\n' "$OPERATOR_SSH_PUBLIC_KEY" >>/root/.ssh/authorized_keys
	echo "finalize: operator key added for root"
fi

for f in /root/.ssh/authorized_keys /home/*/.ssh/authorized_keys; do
	[ -f "$f" ] || continue
	sed -i '/ synod-image-build$/d' "$f"
done

rm -f /etc/ssh/ssh_host_*
cat >/etc/systemd/system/synod-ssh-hostkeys.service <<'UNIT'
# written by packer/scripts/finalize.sh: the image ships without SSH host
# keys so that no two machines booted from it share one.
[Unit]
Description=Generate SSH host keys on first boot
Before=ssh.service
ConditionPathExists=!/etc/ssh/ssh_host_ed25519_key

[Service]
Type=oneshot
ExecStart=/usr/bin/ssh-keygen -A

[Install]
RequiredBy=ssh.service
UNIT
systemctl enable synod-ssh-hostkeys.service

# The debootstrap base skips initrd rebuilds during the build (see
# build-base.sh); the machine itself rebuilds them as Debian does.
if [ -f /etc/initramfs-tools/update-initramfs.conf ]; then
	sed -i 's/^update_initramfs=no$/update_initramfs=yes/' /etc/initramfs-tools/update-initramfs.conf
fi

truncate -s 0 /etc/machine-id
rm -f /var/lib/dbus/machine-id

if command -v cloud-init >/dev/null; then cloud-init clean --logs; fi

apt-get clean
rm -rf /var/lib/apt/lists/*
sync
echo "finalize: build key, host keys, machine-id and apt lists removed"
