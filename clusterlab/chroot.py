"""Running programs inside the ARM image tree: binfmt/qemu-user, bind mounts, always torn down."""

import contextlib
import os
import shutil
from pathlib import Path

from . import cleanup, log, mounts
from .arch import ARCHES
from .errors import BuildError
from .run import run

BINFMT = Path("/proc/sys/fs/binfmt_misc")
CHROOT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8",
              "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
# Keeps package scripts from starting services inside the build tree.
POLICY_RC_D = "#!/bin/sh\n# ClusterLab build: start no services in the image tree\nexit 101\n"


def prepare_emulation(arch: str) -> None:
    """Mount binfmt_misc and register qemu-user for arch when the host lacks them, and choose
    the emulated CPU for every program this build runs (mmdebstrap's included)."""
    emulated = ARCHES[arch]
    if emulated.qemu_user_cpu:
        os.environ["QEMU_CPU"] = emulated.qemu_user_cpu
    if not (BINFMT / "status").exists():
        run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)])
    entry = BINFMT / emulated.qemu_user
    if not entry.exists() or "enabled" not in entry.read_text():
        run(["update-binfmts", "--enable", emulated.qemu_user], check=False)
    if not entry.exists() or "enabled" not in entry.read_text():
        raise BuildError(f"cannot run {arch} programs: binfmt entry {entry} is missing; install "
                         f"qemu-user-static and binfmt-support")
    if "F" not in _binfmt_flags(entry):
        raise BuildError(f"{entry} lacks the F (fix binary) flag, so qemu-user is not found "
                         f"inside the image tree; reinstall qemu-user-static")


def _binfmt_flags(entry: Path) -> str:
    for line in entry.read_text().splitlines():
        if line.startswith("flags:"):
            return line.split(":", 1)[1].strip()
    return ""


@contextlib.contextmanager
def mounted(tree: Path, apt_cache: Path):
    """proc, sys, dev and dev/pts mounted in the tree, the host's package cache and DNS, no
    service starts.

    Everything is undone in reverse order on every exit path, including errors and signals.
    """
    with contextlib.ExitStack() as undo:
        for fstype, source, target in (("proc", "proc", "proc"), ("sysfs", "sysfs", "sys"),
                                       ("bind", "/dev", "dev"), ("bind", "/dev/pts", "dev/pts"),
                                       ("bind", str(apt_cache), "var/cache/apt/archives")):
            mountpoint = tree / target
            mountpoint.mkdir(parents=True, exist_ok=True)
            options = ["--bind"] if fstype == "bind" else ["-t", fstype]
            run(["mount", *options, source, str(mountpoint)])
            undo.enter_context(cleanup.undone(lambda point=mountpoint: mounts.unmount(point)))
        undo.enter_context(_replaced(tree / "etc/resolv.conf", Path("/etc/resolv.conf").read_text()))
        undo.enter_context(_replaced(tree / "usr/sbin/policy-rc.d", POLICY_RC_D, mode=0o755))
        yield


@contextlib.contextmanager
def _replaced(path: Path, content: str, mode: int = 0o644):
    """A file in the tree replaced for the duration, then put back as it was, unless a package
    installed its own meanwhile (systemd-resolved's resolv.conf link): that one stays."""
    saved = path.with_name(path.name + ".clusterlab-saved")
    had_original = path.is_symlink() or path.exists()
    if had_original:
        os.rename(path, saved)
    try:
        path.write_text(content)
        path.chmod(mode)
        yield
    finally:
        if path.is_symlink() or not path.exists() or path.read_text() != content:
            saved.unlink(missing_ok=True)
        else:
            path.unlink()
            if had_original:
                os.rename(saved, path)


def run_in(tree: Path, argv: list[str], env: dict[str, str] | None = None, **kwargs) -> str:
    """Run a program inside the tree (which must be mounted())."""
    return run(["chroot", str(tree), *argv], env={**CHROOT_ENV, **(env or {})}, **kwargs)


def run_script(tree: Path, script: Path, env: dict[str, str] | None = None) -> None:
    """Copy a host script into the tree, run it there, remove it."""
    inside = Path("/tmp") / f"clusterlab-{script.name}"
    shutil.copy(script, tree / inside.relative_to("/"))
    (tree / inside.relative_to("/")).chmod(0o755)
    try:
        log.detail(f"running {script} in the image")
        run_in(tree, [str(inside)], env=env)
    finally:
        (tree / inside.relative_to("/")).unlink(missing_ok=True)
