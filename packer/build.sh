#!/usr/bin/env bash
# build.sh builds the synod machine image (`make image`) and prints where it
# is: the debootstrap base disk (packer/base/build-base.sh, cached), then
# `packer build` of packer/synod.pkr.hcl under software emulation, whose last
# provisioner fails the build if the image lacks anything (check-image.sh).
#
# Usage: packer/build.sh [extra packer build arguments, e.g. -var cpus=4]
#
# Environment:
#   IMAGE_OUT                     output directory (default out/image)
#   IMAGE_NAME                    image name without .qcow2 (default synod-debian12)
#   SYNOD_BINARY                  the binary to install (default ./synod, from make build)
#   OPERATOR_SSH_PUBLIC_KEY_FILE  public key that may log in as root on the
#                                 machines booted from the image
#   CLOUD_IMAGE_URL, CLOUD_IMAGE_CHECKSUM
#                                 build from a Debian 12 cloud image instead of
#                                 the debootstrap base (source qemu.cloud)
#   CLOUD_SSH_USERNAME            the cloud image's default user (default debian)
set -euo pipefail

die() {
	echo "image: $*" >&2
	exit 1
}

cd "$(dirname "$0")/.."
# No version check against the network (there is none on a build machine).
export CHECKPOINT_DISABLE=1
OUT=${IMAGE_OUT:-out/image}
NAME=${IMAGE_NAME:-synod-debian12}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
BINARY=${SYNOD_BINARY:-$PWD/synod}
[ -x "$BINARY" ] || die "no synod binary at $BINARY: run make build first"
command -v packer >/dev/null || die "packer is missing (make deps installs it)"

start=$(date +%s)
vars=(-var "output_dir=$OUT" -var "vm_name=$NAME" -var "synod_binary=$BINARY")
if [ -n "${OPERATOR_SSH_PUBLIC_KEY_FILE:-}" ]; then
	[ -r "$OPERATOR_SSH_PUBLIC_KEY_FILE" ] || die "cannot read $OPERATOR_SSH_PUBLIC_KEY_FILE"
	vars+=(-var "operator_ssh_public_key=$(head -n1 "$OPERATOR_SSH_PUBLIC_KEY_FILE")")
fi

if [ -n "${CLOUD_IMAGE_URL:-}" ]; then
	[ -n "${CLOUD_IMAGE_CHECKSUM:-}" ] || die "CLOUD_IMAGE_URL needs CLOUD_IMAGE_CHECKSUM (sha256:<hex> or file:<SUMS URL>)"
	user=${CLOUD_SSH_USERNAME:-debian}
	source=qemu.cloud
	# A NoCloud seed that lets a build-only key in; finalize.sh removes the
	# key and makes cloud-init run again on the machines booted from the image.
	seed="$OUT/cloud-seed"
	rm -rf "$seed"
	mkdir -p "$seed"
	ssh-keygen -q -t ed25519 -N '' -C synod-image-build -f "$seed/build_key"
	cat >"$seed/user-data" <<USERDATA
#cloud-config
users:
  - name: $user
    sudo: "ALL=(ALL) NOPASSWD:ALL"
    shell: /bin/bash
    ssh_authorized_keys:
      - $(cat "$seed/build_key.pub")
USERDATA
	printf 'instance-id: synod-image-build\nlocal-hostname: synod-image\n' >"$seed/meta-data"
	vars+=(-var "cloud_image_url=$CLOUD_IMAGE_URL" -var "cloud_image_checksum=$CLOUD_IMAGE_CHECKSUM"
		-var "cloud_ssh_username=$user" -var "cloud_seed_dir=$seed")
else
	source=qemu.debootstrap
	packer/base/build-base.sh "$OUT/base"
	vars+=(-var "base_dir=$OUT/base")
fi

echo "image: packer build -only=$source (log: $OUT/packer.log)"
# Packer copies downloads into its cache; keep that under out/ too.
export PACKER_CACHE_DIR="$OUT/packer_cache"
# Packer 1.6.6 leaves the staging directory of cd_files behind in TMPDIR:
# give it one of its own and remove it afterwards.
export TMPDIR="$OUT/tmp"
rm -rf "$TMPDIR"
mkdir -p "$TMPDIR"
trap 'rm -rf "$TMPDIR"' EXIT
if ! packer build -color=false -force -only="$source" "${vars[@]}" "$@" packer 2>&1 | tee "$OUT/packer.log"; then
	die "packer build failed (log: $OUT/packer.log, serial console: $OUT/$NAME.serial.log)"
fi
[ -f "$OUT/$NAME.qcow2" ] || die "packer finished but $OUT/$NAME.qcow2 is missing"
echo "image: $OUT/$NAME.qcow2 ($(du -h "$OUT/$NAME.qcow2" | cut -f1), sha256 in $NAME.qcow2.sha256) built in $(($(date +%s) - start)) s"
