# Every target installs what it needs first, so a fresh Debian/Ubuntu machine needs no other step.
VENV := .venv
PY := $(VENV)/bin/python
CONFIG ?=
CONFIG_ARGS := $(if $(CONFIG),-c $(CONFIG))
HOST_PACKAGES := mmdebstrap qemu-user-static binfmt-support qemu-system-arm dosfstools mtools \
	e2fsprogs fdisk xz-utils zstd bmap-tools shellcheck python3-venv debian-archive-keyring \
	arch-test openssh-client tar
# the tests also start a Docker daemon and a registry, and push images with skopeo
TEST_PACKAGES := docker.io docker-registry skopeo
# the end-to-end tests put their emulated nodes on a virtual switch
E2E_PACKAGES := vde-switch vdeplug
PYTHON_STAMP := $(VENV)/.installed

.PHONY: image test e2e bench flash clean host-packages test-packages e2e-packages

image: $(PYTHON_STAMP) host-packages
	$(PY) build.py build $(CONFIG_ARGS)

test: $(PYTHON_STAMP) test-packages
	$(PY) -m pytest -v --durations=25

# a second cold build reproduces the image, then three emulated nodes form a cluster (about an
# hour); E2E_SELECT="not whole_restart and not cold_rebuild" leaves out the two slowest tests
e2e: $(PYTHON_STAMP) e2e-packages
	$(PY) -m pytest -v -s tests/e2e $(if $(E2E_SELECT),-m "$(E2E_SELECT)")

bench: $(PYTHON_STAMP) host-packages
	$(PY) bench/bench.py

# make flash DEVICE=/dev/sdX [HOSTNAME=node1] [SSH_KEY=~/.ssh/id_ed25519.pub] [IMAGE=…]
# (IMAGE defaults to the newest image in images/; HOSTNAME counts only given on the command line,
# not inherited from the shell)
FLASH_IMAGE = $(or $(IMAGE),$(shell ls -t images/*.img.xz images/*.img.zst 2>/dev/null | head -n 1))
flash: $(PYTHON_STAMP) host-packages
	@[ -n "$(DEVICE)" ] || { echo "error: say which card: make flash DEVICE=/dev/sdX" >&2; exit 2; }
	@[ -n "$(FLASH_IMAGE)" ] || { echo "error: no image in images/: run make image first" >&2; exit 2; }
	$(PY) build.py flash $(FLASH_IMAGE) --device $(DEVICE) \
		$(if $(filter command line,$(origin HOSTNAME)),--hostname $(HOSTNAME)) \
		$(if $(SSH_KEY),--ssh-key $(SSH_KEY))

clean: $(PYTHON_STAMP)
	$(PY) build.py clean $(CONFIG_ARGS) $(if $(CACHE),--cache)

# installs those of the packages given that are missing
install-missing = @missing=$$(for p in $(1); do dpkg-query -W -f '$${db:Status-Abbrev}' $$p 2>/dev/null | grep -q '^ii' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing host packages:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

host-packages:
	@[ "$$(id -u)" = 0 ] || { echo "error: run as root (sudo make …): installing packages and building an image need root (chroot, loop devices, binfmt_misc)" >&2; exit 1; }
	$(call install-missing,$(HOST_PACKAGES))

test-packages: host-packages
	$(call install-missing,$(TEST_PACKAGES))

e2e-packages: host-packages
	$(call install-missing,$(E2E_PACKAGES))

$(PYTHON_STAMP): pyproject.toml | host-packages
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $@
