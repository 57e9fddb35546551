# Inputs of the synod machine image build (synod.pkr.hcl). Every path
# defaults to a place under the repository (path.root is this directory), so
# `packer build packer` works from the repository root after
# packer/base/build-base.sh; packer/build.sh (`make image`) passes them all.

variable "base_dir" {
  type        = string
  default     = ""
  description = "Output of packer/base/build-base.sh (base.qcow2, vmlinuz, initrd.img, build_key). Default: out/image/base."
}

variable "output_dir" {
  type        = string
  default     = ""
  description = "Where the finished image is written. Default: out/image."
}

variable "vm_name" {
  type        = string
  default     = "synod-debian12"
  description = "Image file name without .qcow2."

  validation {
    condition     = var.vm_name != "" && length(split("/", var.vm_name)) == 1 && length(split(" ", var.vm_name)) == 1 && length(split("'", var.vm_name)) == 1
    error_message = "The vm_name must be a plain file name: no slash, space or quote."
  }
}

variable "synod_binary" {
  type        = string
  default     = ""
  description = "The synod binary to install (make build). Default: ./synod in the repository."
}

variable "ssh_private_key_file" {
  type        = string
  default     = ""
  description = "Build-time SSH key for the debootstrap source. Default: base_dir/build_key (made by build-base.sh)."
}

variable "accelerator" {
  type        = string
  default     = "tcg"
  description = "QEMU accelerator: tcg (software emulation, works anywhere) or kvm."

  validation {
    condition     = contains(["tcg", "kvm", "hvf", "whpx", "none"], var.accelerator)
    error_message = "The accelerator must be one of tcg, kvm, hvf, whpx, none."
  }
}

variable "cpus" {
  type    = number
  default = 2
}

variable "memory" {
  type        = number
  default     = 1024
  description = "Build VM memory in MiB."
}

variable "disk_size" {
  type        = string
  default     = "8193M"
  description = "Virtual disk size; the debootstrap base's 8 GiB root partition plus its 1 MiB MBR gap."
}

variable "ssh_timeout" {
  type        = string
  default     = "15m"
  description = "How long to wait for SSH; software emulation on a busy machine is slow to boot."
}

variable "cloud_image_url" {
  type        = string
  default     = ""
  description = "For the qemu.cloud source: a Debian 12 cloud qcow2 (genericcloud), URL or local path."
}

variable "cloud_image_checksum" {
  type        = string
  default     = ""
  description = "For the qemu.cloud source: checksum of cloud_image_url, e.g. sha256:<hex> or file:<SHA512SUMS URL>."
}

variable "cloud_ssh_username" {
  type        = string
  default     = "debian"
  description = "For the qemu.cloud source: the cloud image's default user (cloud-init creates it with the build key)."
}

variable "cloud_seed_dir" {
  type        = string
  default     = ""
  description = "For the qemu.cloud source: directory with the cloud-init seed (user-data, meta-data) and build_key, made by packer/build.sh. Default: out/image/cloud-seed."
}

variable "operator_ssh_public_key" {
  type        = string
  default     = ""
  description = "An SSH public key (the key text, not a path) that may log in as root on machines booted from the image. Empty: none; then add one with cloud-init or virt-customize."
}

variable "check_packages" {
  type        = list(string)
  default     = ["containerd", "runc", "containernetworking-plugins", "iptables", "iproute2", "ca-certificates", "conntrack"]
  description = "Debian packages the check step requires in the finished image; the build fails if one is missing."
}
