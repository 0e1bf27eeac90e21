"""Work on the image tree: build-time shortcuts in, stages applied, the tree made ready to ship.

During the build, update-initramfs and py3compile are diverted to no-ops: under emulation the
initramfs would otherwise be rebuilt after every package that touches it (minutes each), and
packages would compile their Python one by one. Each stage ends by compiling what it added
(compile_bytecode.py); `finish` restores both and builds the initramfs once.
"""

import os
import shutil
from pathlib import Path

from . import chroot, layers, log
from .render import Renderer
from .run import run
from .stages import Stage

DIVERTED = ("/usr/sbin/update-initramfs", "/usr/bin/py3compile")
FIRMWARE = "/boot/firmware"  # where Debian mounts the boot (FAT) partition
PYTHON_PACKAGES = "usr/lib/python3/dist-packages"  # where the image's python3 finds packages
PYTHON = "usr/bin/python3"
BYTECODE_COMPILER = Path(__file__).with_name("compile_bytecode.py")
# a fixed hash seed orders the sets in compiled constants the same way in every build
BYTECODE_ENV = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
NO_OP = "#!/bin/sh\n# ClusterLab build: postponed to the end of the build\nexit 0\n"
BUILD_DPKG_CFG = "etc/dpkg/dpkg.cfg.d/clusterlab-build"
# Unsafe I/O is safe here: a failed build throws the tree away. Our own files win over conffiles.
BUILD_DPKG_OPTIONS = "force-unsafe-io\nforce-confold\nforce-confdef\n"
# What mkinitramfs reads: package versions (kernel, initramfs-tools, busybox…) and local settings.
INITRAMFS_INPUTS = ("var/lib/dpkg/status", "etc/initramfs-tools", "etc/modprobe.d", "etc/fstab",
                    "etc/crypttab")
APT_INSTALL = ["apt-get", "install", "--yes", "--no-install-recommends", "-o", "APT::Sandbox::User=root"]
APT_UPDATE = ["apt-get", "update", "-o", "APT::Sandbox::User=root"]


def prepare(tree: Path) -> None:
    (tree / BUILD_DPKG_CFG).write_text(BUILD_DPKG_OPTIONS)
    for path in DIVERTED:
        chroot.run_in(tree, ["dpkg-divert", "--quiet", "--local", "--rename",
                             "--divert", f"{path}.clusterlab", "--add", path])
        stub = tree / path.lstrip("/")
        stub.write_text(NO_OP)
        stub.chmod(0o755)


def apply_stage(tree: Path, stage: Stage, renderer: Renderer,
                boot_mount: str = FIRMWARE) -> None:
    """Overlay and Python packages, then templates (so package scripts see our settings),
    packages, scripts, and the byte-code of the Python they added. Templates meant for /boot/firmware go where the base mounts its boot
    partition."""
    if stage.overlay:
        run(["cp", "-a", "--no-preserve=ownership", f"{stage.overlay}/.", str(tree)])
    for package in stage.python_packages:
        shutil.copytree(package, tree / PYTHON_PACKAGES / package.name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns(layers.BYTECODE))
    for source, destination in stage.templates:
        if destination.startswith(FIRMWARE + "/"):
            destination = boot_mount + destination.removeprefix(FIRMWARE)
        target = tree / destination.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(renderer.render(source))
    packages = packages_of(stage, renderer)
    if packages:
        log.info(f"installing {len(packages)} packages: {' '.join(packages)}")
        chroot.run_in(tree, [*APT_INSTALL, *packages])
    for script in stage.chroot_scripts:
        chroot.run_script(tree, script)
    for script in stage.host_scripts:
        run([str(script)], env={"ROOTFS": str(tree)})
    if (tree / PYTHON).exists():
        chroot.run_script(tree, BYTECODE_COMPILER, env=BYTECODE_ENV)


def packages_of(stage: Stage, renderer: Renderer) -> list[str]:
    """The stage's package names with their {{ variables }} filled in."""
    where = f"{stage.path}/stage.yaml: packages"
    return [renderer.render_string(p, where) for p in stage.packages]


def finish(tree: Path, initramfs_cache: Path) -> None:
    """Undo build shortcuts and build the initramfs once (inside the mounted chroot)."""
    (tree / BUILD_DPKG_CFG).unlink()
    for path in DIVERTED:
        (tree / path.lstrip("/")).unlink()
        chroot.run_in(tree, ["dpkg-divert", "--quiet", "--local", "--rename",
                             "--divert", f"{path}.clusterlab", "--remove", path])
    for kernel in sorted((tree / "boot").glob("vmlinuz-*")):
        _install_initramfs(tree, kernel.name.removeprefix("vmlinuz-"), initramfs_cache)


def _install_initramfs(tree: Path, kernel_version: str, cache: Path) -> None:
    """Build the initramfs, or take it from the cache when nothing it is made from changed;
    then run the post-update hooks (raspi-firmware copies kernel, initrd and DTBs to the FAT)."""
    name = f"initrd.img-{kernel_version}"
    inputs = [tree / p for p in INITRAMFS_INPUTS if (tree / p).exists()]
    # mkinitramfs clamps times to SOURCE_DATE_EPOCH and sorts its archive: with the kernel's
    # own time (from its package), the same inputs give the same initramfs, made now or later
    kernel_time = int((tree / "boot" / f"vmlinuz-{kernel_version}").stat().st_mtime)
    cached = cache / layers.key_of(kernel_version, kernel_time,
                                   layers.digest_files(inputs, tree)) / name
    if cached.exists():
        log.info(f"initramfs for {kernel_version}: unchanged, taken from the cache")
        shutil.copy2(cached, tree / "boot" / name)
    else:
        # a downloaded base image may bring one: -c (create) refuses to replace it
        (tree / "boot" / name).unlink(missing_ok=True)
        with log.step(f"initramfs for {kernel_version} (once)"):
            chroot.run_in(tree, ["update-initramfs", "-c", "-k", kernel_version],
                          env={"SOURCE_DATE_EPOCH": str(kernel_time)})
        cached.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(tree / "boot" / name, cached.with_suffix(".partial"))
        os.rename(cached.with_suffix(".partial"), cached)
        return  # update-initramfs ran the hooks itself
    chroot.run_in(tree, ["run-parts", f"--arg={kernel_version}", f"--arg=/boot/{name}",
                         "/etc/initramfs/post-update.d"])


# emptied before shipping: package lists and downloads, and what the device keeps in tmpfs
EMPTIED = ("var/lib/apt/lists", "var/cache/apt", "tmp", "var/tmp", "run")


def strip(tree: Path) -> None:
    """Remove build leftovers and what must be unique per node (after the chroot is unmounted,
    so the shared package cache is not touched)."""
    _remove_node_identity(tree)
    _remove_build_leftovers(tree)


def _remove_node_identity(tree: Path) -> None:
    """Each node makes its own machine-id and SSH host keys on first boot."""
    (tree / "etc/machine-id").write_text("")
    (tree / "var/lib/dbus/machine-id").unlink(missing_ok=True)
    for key in (tree / "etc/ssh").glob("ssh_host_*"):
        key.unlink()


def _remove_build_leftovers(tree: Path) -> None:
    for log_file in (tree / "var/log").rglob("*"):
        if log_file.is_file() and not log_file.is_symlink():
            log_file.write_bytes(b"")
    # ldconfig's aux-cache records inode numbers and ctimes: different in every build
    (tree / "var/cache/ldconfig/aux-cache").unlink(missing_ok=True)
    for folder in EMPTIED:
        for entry in (tree / folder).glob("*"):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            elif entry.name != "lock":
                entry.unlink()
    (tree / "var/lib/apt/lists/partial").mkdir(parents=True, exist_ok=True)
    (tree / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def set_mtimes(folder: Path, epoch: int) -> None:
    """Every entry's time becomes SOURCE_DATE_EPOCH: whether a file came from a package or was
    made by the build (now, or when a cached layer was made), its time says nothing then."""
    for dirpath, dirnames, filenames in os.walk(folder):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (epoch, epoch), follow_symlinks=False)
    os.utime(folder, (epoch, epoch))


def split_boot(tree: Path, bootfs: Path, boot_mount: str = FIRMWARE) -> None:
    """Move the FAT partition's content out of the tree; an empty mount point stays."""
    firmware = tree / boot_mount.lstrip("/")
    bootfs.mkdir()
    for entry in sorted(firmware.iterdir()):
        shutil.move(str(entry), bootfs / entry.name)
