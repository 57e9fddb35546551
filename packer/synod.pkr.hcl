# The synod machine image: Debian 12 with the synod binary, containerd, runc,
# iptables, the synod-master/synod-worker units (installed, not enabled: the
# role is chosen at bootstrap), sysctls and kernel modules. Its contents come
# from ansible/image.yml, which applies the same synod_common role as the
# bootstrap (site.yml); a check script then fails the build if anything is
# missing. See README "Building the machine image".
#
# Written for the Packer Debian 12 ships (1.6.6): HCL2, built-in qemu builder
# and ansible/shell/shell-local plugins, no required_plugins and no `packer
# init`.
#
# Two sources, pick one with -only:
#   qemu.debootstrap  the local base disk from packer/base/build-base.sh,
#                     booted with its own kernel and initrd (-kernel/-initrd)
#                     and made bootable by GRUB during the build;
#   qemu.cloud        a Debian 12 cloud image (cloud_image_url and
#                     cloud_image_checksum), reached through a cloud-init seed
#                     that packer/build.sh writes.

packer {
  required_version = ">= 1.6.6"
}

locals {
  repo_dir     = "${path.root}/.."
  base_dir     = var.base_dir != "" ? var.base_dir : "${local.repo_dir}/out/image/base"
  output_dir   = var.output_dir != "" ? var.output_dir : "${local.repo_dir}/out/image"
  seed_dir     = var.cloud_seed_dir != "" ? var.cloud_seed_dir : "${local.output_dir}/cloud-seed"
  synod_binary = var.synod_binary != "" ? var.synod_binary : "${local.repo_dir}/synod"
  ssh_key      = var.ssh_private_key_file != "" ? var.ssh_private_key_file : "${local.base_dir}/build_key"

  # Packer writes a backing-file overlay here; the post-processor turns it
  # into the standalone image and removes the directory.
  build_dir = "${local.output_dir}/packer-${var.vm_name}"
  overlay   = "${local.build_dir}/${var.vm_name}.overlay.qcow2"
  image     = "${local.output_dir}/${var.vm_name}.qcow2"

  # Packer's default -netdev forwards SSH on every address of the host; bind
  # it to loopback only. The serial console goes to a file for debugging a
  # boot that never reaches SSH.
  netdev = ["-netdev", "user,id=user.0,hostfwd=tcp:127.0.0.1:{{ .SSHHostPort }}-:22"]
  serial = ["-serial", "file:${local.output_dir}/${var.vm_name}.serial.log"]
  cpu    = ["-cpu", "max"]

  # Shell provisioners run as root for either source (the cloud image logs
  # in as an unprivileged user with passwordless sudo).
  sudo_execute = "chmod +x {{ .Path }}; sudo -n env {{ .Vars }} {{ .Path }}"
}

source "qemu" "debootstrap" {
  iso_url      = "${local.base_dir}/base.qcow2"
  iso_checksum = "none"
  disk_image   = true
  # The overlay keeps the build from copying the base; QEMU 7.2's qemu-img
  # refuses a backing file without its format, which Packer 1.6.6 omits.
  use_backing_file = true
  qemu_img_args {
    create = ["-F", "qcow2"]
  }
  format         = "qcow2"
  disk_size      = var.disk_size
  disk_interface = "virtio"
  net_device     = "virtio-net"

  accelerator = var.accelerator
  cpus        = var.cpus
  memory      = var.memory
  headless    = true
  qemuargs = [
    ["-kernel", "${local.base_dir}/vmlinuz"],
    ["-initrd", "${local.base_dir}/initrd.img"],
    ["-append", "root=LABEL=synod-root ro console=ttyS0,115200n8"],
    local.netdev,
    local.serial,
    local.cpu,
  ]

  output_directory = local.build_dir
  vm_name          = "${var.vm_name}.overlay.qcow2"

  communicator         = "ssh"
  ssh_username         = "root"
  ssh_private_key_file = local.ssh_key
  ssh_timeout          = var.ssh_timeout
  shutdown_command     = "shutdown -P now"
}

source "qemu" "cloud" {
  iso_url          = var.cloud_image_url
  iso_checksum     = var.cloud_image_checksum
  disk_image       = true
  use_backing_file = true
  qemu_img_args {
    create = ["-F", "qcow2"]
  }
  format         = "qcow2"
  disk_size      = var.disk_size
  disk_interface = "virtio"
  net_device     = "virtio-net"

  accelerator = var.accelerator
  cpus        = var.cpus
  memory      = var.memory
  headless    = true
  qemuargs    = [local.netdev, local.serial, local.cpu]

  # cloud-init's NoCloud data source reads the seed from a CD labelled cidata.
  cd_files = ["${local.seed_dir}/user-data", "${local.seed_dir}/meta-data"]
  cd_label = "cidata"

  output_directory = local.build_dir
  vm_name          = "${var.vm_name}.overlay.qcow2"

  communicator         = "ssh"
  ssh_username         = var.cloud_ssh_username
  ssh_private_key_file = "${local.seed_dir}/build_key"
  ssh_timeout          = var.ssh_timeout
  shutdown_command     = "sudo -n shutdown -P now"
}

build {
  sources = ["source.qemu.debootstrap", "source.qemu.cloud"]

  # The image's contents: the bootstrap's own synod_common role, told to
  # start nothing (synod_common_image_build).
  provisioner "ansible" {
    only          = ["qemu.debootstrap"]
    playbook_file = "${local.repo_dir}/ansible/image.yml"
    user          = "root"
    use_proxy     = false
    extra_arguments = [
      "-e", "synod_binary_src=${local.synod_binary}",
    ]
    ansible_env_vars = [
      "ANSIBLE_CONFIG=${local.repo_dir}/ansible/ansible.cfg",
      "ANSIBLE_HOST_KEY_CHECKING=False",
      "ANSIBLE_NOCOLOR=True",
      # No ControlPersist master: one left running holds the provisioner's
      # output open, and Packer waits for it.
      "ANSIBLE_SSH_ARGS=-o ControlMaster=no -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
    ]
  }

  provisioner "ansible" {
    only          = ["qemu.cloud"]
    playbook_file = "${local.repo_dir}/ansible/image.yml"
    user          = var.cloud_ssh_username
    use_proxy     = false
    extra_arguments = [
      "-e", "synod_binary_src=${local.synod_binary}",
    ]
    ansible_env_vars = [
      "ANSIBLE_CONFIG=${local.repo_dir}/ansible/ansible.cfg",
      "ANSIBLE_HOST_KEY_CHECKING=False",
      "ANSIBLE_NOCOLOR=True",
      # No ControlPersist master: one left running holds the provisioner's
      # output open, and Packer waits for it.
      "ANSIBLE_SSH_ARGS=-o ControlMaster=no -o UserKnownHostsFile=/dev/null -o StrictHostKeyChecking=no",
    ]
  }

  # The debootstrap base boots through QEMU's -kernel; GRUB makes the
  # finished image boot on its own (a cloud image has a boot loader already).
  provisioner "shell" {
    only            = ["qemu.debootstrap"]
    script          = "${path.root}/scripts/bootloader.sh"
    execute_command = local.sudo_execute
  }

  # Machine-specific state out, operator key in: build key, SSH host keys,
  # machine-id, apt lists, cloud-init state.
  provisioner "shell" {
    script           = "${path.root}/scripts/finalize.sh"
    execute_command  = local.sudo_execute
    environment_vars = ["OPERATOR_SSH_PUBLIC_KEY=${var.operator_ssh_public_key}"]
  }

  # The build fails here if the binary, the units or a package is missing.
  provisioner "shell" {
    script          = "${path.root}/scripts/check-image.sh"
    execute_command = local.sudo_execute
    environment_vars = [
      "CHECK_PACKAGES=${join(" ", var.check_packages)}",
      "SYNOD_BINARY_PATH=/usr/local/bin/synod",
    ]
  }

  # Ship a standalone image: the overlay depends on the local base.
  post-processor "shell-local" {
    inline = [
      "set -e",
      "qemu-img convert -O qcow2 '${local.overlay}' '${local.image}.tmp'",
      "mv '${local.image}.tmp' '${local.image}'",
      "cd '${local.output_dir}' && sha256sum '${var.vm_name}.qcow2' > '${var.vm_name}.qcow2.sha256'",
      "rm -rf '${local.build_dir}'",
    ]
  }
}
