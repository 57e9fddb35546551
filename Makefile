# synod: build, test and run a local cluster. `make test` is the one test
# command (README and .ci/run use it); `make up` starts a 3-master cluster.

GO ?= go

# Debian packages the tests and tools need. etcd-server and etcd-client give
# the reference etcd and etcdctl the compatibility tests run against;
# containerd and runc run the node runtime's containers; busybox-static is
# the test image's only binary; iptables and iproute2 are what the service
# proxy and pod networking program (inside network namespaces the tests make).
# packer, qemu, ansible, the linters, debootstrap and systemd-nspawn build and
# check the machine image and the Ansible testbed (packer/, ansible/).
APT_PACKAGES := etcd-client etcd-server containerd runc iptables busybox-static iproute2 \
	packer qemu-system-x86 qemu-utils xorriso ansible ansible-lint yamllint \
	debootstrap systemd-container openssh-client wget

.PHONY: deps build vet test up bench clean

# deps installs only what is missing, so it is quick on a prepared machine.
deps:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
		dpkg -s $$p 2>/dev/null | grep -q '^Status: install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then echo "deps: all apt packages installed"; exit 0; fi; \
	echo "deps: installing$$missing"; \
	sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get update && \
	$$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y $$missing

build:
	$(GO) build -o synod .

vet:
	$(GO) vet ./...

# Plain (not -race) to stay within the time budget on two cores. The
# binary is built once and shared by every package's tests.
test: deps vet build
	SYNOD_BINARY=$(CURDIR)/synod $(GO) test -race=false -count=1 -timeout 20m ./...

# A worker needs root (network namespaces, containerd); without root, up
# starts the masters only.
UP_WORKERS ?= $(shell [ "$$(id -u)" = 0 ] && echo 1 || echo 0)

up: deps build
	./synod up --masters 3 --workers $(UP_WORKERS) --dir .cluster

# The synod-vs-etcd KV benchmark (about 2 minutes; not part of `make test`).
bench: deps build
	./synod bench kv

clean:
	rm -rf synod .cluster

# The synod machine image (README "Building the machine image"): a Debian 12
# qcow2 with synod, containerd, runc, iptables and the master/worker units,
# built by Packer under software emulation (no KVM needed) from a debootstrap
# base disk cached in out/image/base. Prints where the image is. Extra
# `packer build` arguments: make image PACKER_ARGS='-var cpus=4'.
PACKER_ARGS ?=

.PHONY: image packer-check

image: deps build
	CHECKPOINT_DISABLE=1 packer/build.sh $(PACKER_ARGS)

# The fast packer checks that `make test` also runs: packer fmt -check,
# packer validate (both sources, dummy key and vars) and the image check
# script against roots with one thing missing.
packer-check: deps build
	SYNOD_BINARY=$(CURDIR)/synod $(GO) test -count=1 ./packer

# The Ansible testbed (ansible/testbed/): Debian machines as systemd-nspawn
# containers on bridge synodtb0 (10.95.0.0/24), inventory in
# ansible/inventory/testbed.ini. Then: cd ansible && ansible-playbook -i
# inventory/testbed.ini site.yml
TESTBED_MASTERS ?= 3
TESTBED_WORKERS ?= 1

.PHONY: testbed-up testbed-down lint-ansible

testbed-up: deps build
	ansible/testbed/up.sh $(TESTBED_MASTERS) $(TESTBED_WORKERS)

testbed-down:
	ansible/testbed/down.sh

lint-ansible: deps
	cd ansible && yamllint . && ansible-lint --offline
