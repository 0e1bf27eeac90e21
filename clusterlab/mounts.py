"""Mount points as the kernel lists them (its escapes decoded), unmounted deepest first, and no
folder removed while anything is mounted below it: a removal through a live bind mount would
delete the host's files (its /dev, its package cache)."""

import contextlib
import os
import re
import shutil
import tempfile
from pathlib import Path

from . import cleanup
from .errors import BuildError
from .run import run

TABLE = Path("/proc/self/mounts")
# the kernel writes space, tab, newline and backslash in a path as octal escapes: \040 …
ESCAPE = re.compile(rb"\\([0-7]{3})")


def table() -> list[tuple[str, Path]]:
    """(source, mount point) of every mount, in the order they were made."""
    entries = []
    for line in TABLE.read_bytes().splitlines():
        source, point = line.split(b" ")[:2]
        entries.append((_decoded(source), Path(_decoded(point))))
    return entries


def _decoded(field: bytes) -> str:
    return os.fsdecode(ESCAPE.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def below(folder: Path) -> list[Path]:
    """The mount points at or below folder, deepest first."""
    top = folder.resolve()
    points = {point for _, point in table() if point == top or point.is_relative_to(top)}
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def unmount(point: Path) -> None:
    """Unmount; a mount still held by a process is detached (the kernel frees it when that
    process ends)."""
    try:
        run(["umount", str(point)])
    except BuildError:
        run(["umount", "--lazy", str(point)])


def unmount_all_below(folder: Path) -> None:
    """Unmount whatever is mounted at or below folder (left by a killed build), deepest first."""
    for point in below(folder):
        unmount(point)


def remove_tree(folder: Path) -> None:
    """Remove folder and everything in it, after unmounting what is mounted below it; refuse
    when anything stays mounted there."""
    unmount_all_below(folder)
    still = below(folder)
    if still:
        raise BuildError(f"{folder}: not removed: {still[0]} is still mounted below it")
    shutil.rmtree(folder)


def remove_mount_point(point: Path) -> None:
    """Remove an empty folder a mount was made on; never anything in it (os.rmdir refuses a
    folder that is not empty, as one still mounted is)."""
    os.rmdir(point)


@contextlib.contextmanager
def on_temporary_folder(mount_argv: list[str], prefix: str):
    """A new temporary folder with `mount_argv FOLDER` mounted on it; unmounted and removed on
    every exit path, and removed only once nothing is mounted on it."""
    point = Path(tempfile.mkdtemp(prefix=prefix))
    with cleanup.undone(lambda: remove_mount_point(point)):
        run([*mount_argv, str(point)])
        with cleanup.undone(lambda: unmount(point)):
            yield point
