"""Disk images: partition, make file systems from trees, read partitions back.

Assembly needs no loop device: sfdisk writes the MBR into the file, mkfs.vfat --offset and mtools
fill the FAT, `mke2fs -d -E offset=` the ext4. Reading an image back attaches the ext4 partition
with `losetup -o … --sizelimit …`, which works on kernels without MBR partition scanning.
"""

import contextlib
import dataclasses
import json
import os
import re
import shutil
import tempfile
from pathlib import Path

from . import cleanup, log, mounts
from .errors import BuildError, UserError
from .run import run

SECTOR = 512
MIB = 1 << 20
ALIGN = 4 * MIB  # partition starts and sizes: SD cards erase in 4 MiB blocks
BOOT_LABEL = "CL_BOOT"
ROOT_LABEL = "CL_ROOT"
FAT32_MIN_CLUSTERS = 66000  # 65525 and a margin for the FAT's own sectors
ROOT_INODE = 2
MTOOLS_ENV = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}


@dataclasses.dataclass(frozen=True)
class Partition:
    number: int
    start: int  # bytes
    size: int  # bytes
    type: str  # MBR type, hex without 0x


@dataclasses.dataclass(frozen=True)
class Identity:
    """Fixed identifiers, so that the same inputs give the same bytes."""
    disk_id: int  # 32-bit MBR signature
    boot_volume_id: int  # 32-bit FAT serial
    root_uuid: str
    timestamp: int  # SOURCE_DATE_EPOCH


def align_up(size: int, to: int = ALIGN) -> int:
    return -(-size // to) * to


def tree_bytes(tree: Path) -> int:
    """Space the tree's files take in 4 KiB blocks (hard links counted once)."""
    seen: set[int] = set()
    total = 0
    for dirpath, dirnames, filenames in os.walk(tree):
        total += 4096 * (1 + len(dirnames))
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if st.st_ino in seen:
                continue
            seen.add(st.st_ino)
            total += align_up(st.st_size, 4096) + 256  # + inode
    return total


def require_free_space(folder: Path, needed: int, purpose: str) -> None:
    """Refuse early, with the numbers, rather than let a tool fail half-way with ENOSPC."""
    free = shutil.disk_usage(folder).free
    if free < needed:
        raise UserError(f"not enough free space in {folder} for {purpose}: about "
                        f"{needed / MIB:.0f} MiB needed, {free / MIB:.0f} MiB free "
                        f"(image.output_dir chooses another folder)")


def assemble(image: Path, bootfs: Path, rootfs: Path, boot_size: int, root_size: int,
             ident: Identity) -> list[Partition]:
    """Write a two-partition SD-card image: FAT32 boot from bootfs, ext4 root from rootfs."""
    boot = Partition(1, ALIGN, align_up(boot_size), "c")
    root = Partition(2, boot.start + boot.size, align_up(root_size), "83")
    with open(image, "wb") as f:
        f.truncate(root.start + root.size)
    _write_partition_table(image, ident.disk_id, [boot, root])
    _make_fat(image, boot, bootfs, ident)
    _make_ext4(image, root, rootfs, ident)
    return [boot, root]


def _write_partition_table(image: Path, disk_id: int, parts: list[Partition]) -> None:
    lines = ["label: dos", f"label-id: 0x{disk_id:08x}", "unit: sectors", ""]
    lines += [f"start={p.start // SECTOR}, size={p.size // SECTOR}, type={p.type}" for p in parts]
    run(["sfdisk", "--no-reread", "--no-tell-kernel", "--wipe", "always", str(image)],
        input=("\n".join(lines) + "\n").encode())


def fat_sectors_per_cluster(size: int) -> int:
    """The largest cluster (up to 4 KiB) that still gives FAT32 enough clusters.

    A FAT32 with fewer than 65525 clusters is read as FAT16 by mtools and firmware alike;
    mkfs.vfat's own choice of 4 KiB clusters gets there below 260 MiB.
    """
    sectors = 8
    while sectors > 1 and size // (SECTOR * sectors) < FAT32_MIN_CLUSTERS:
        sectors //= 2
    return sectors


def _make_fat(image: Path, part: Partition, source: Path, ident: Identity) -> None:
    run(["mkfs.vfat", "-F", "32", "-S", str(SECTOR), "-s", str(fat_sectors_per_cluster(part.size)),
         # --invariant first: it would otherwise replace the volume id given with -i
         "--invariant", "-n", BOOT_LABEL, "-i", f"{ident.boot_volume_id:08x}",
         f"--offset={part.start // SECTOR}", str(image), str(part.size // 1024)])
    entries = sorted(str(p) for p in source.iterdir())
    if entries:
        # -p keeps attributes, -m modification times (already set to SOURCE_DATE_EPOCH)
        run(["mcopy", "-s", "-p", "-m", "-i", f"{image}@@{part.start}", *entries, "::/"],
            env=MTOOLS_ENV)


def _make_ext4(image: Path, part: Partition, source: Path, ident: Identity) -> None:
    run(["mke2fs", "-q", "-F", "-t", "ext4", "-L", ROOT_LABEL, "-U", ident.root_uuid,
         "-E", f"offset={part.start},hash_seed={ident.root_uuid},root_owner=0:0",
         "-d", str(source), str(image), f"{part.size // 1024}k"],
        env={"E2FSPROGS_FAKE_TIME": str(ident.timestamp)})
    _settle_inode_times(image, part, ident.timestamp)


def _settle_inode_times(image: Path, part: Partition, timestamp: int) -> None:
    """Set every inode's access, change and modification times to timestamp. mke2fs -d copies
    them from the source tree, where they tell when the build, or the build of a cached layer,
    ran (and ctime cannot be set there), so without this two builds of the same tree differ."""
    device = f"{image}?offset={part.start}"
    commands = "".join(f"sif <{inode}> {field} @{timestamp}\n"
                       for inode in used_inodes(device) for field in ("atime", "ctime", "mtime"))
    debugfs(device, commands, timestamp)


def debugfs(device: str, commands: str, timestamp: int) -> None:
    """Run debugfs commands in write mode. debugfs exits 0 even when a command fails, so
    anything it says besides its banner and the echo of each command is a failure."""
    said = run(["debugfs", "-w", "-f", "-", device], input=commands.encode(), capture=True,
               stderr_too=True, env={"E2FSPROGS_FAKE_TIME": str(timestamp)})
    echoes = {f"debugfs: {command}" for command in commands.splitlines()}
    complaints = [line for line in said.splitlines()
                  if line not in echoes and not line.startswith("debugfs 1.")]
    if complaints:
        raise BuildError(f"debugfs on {device} failed: " + "; ".join(complaints[:5]))


def used_inodes(device: str) -> list[int]:
    """The inodes in use on an ext4 file system, from dumpe2fs's free-inode ranges per group;
    the reserved inodes below the first file's (except the root directory) are left alone."""
    report = run(["dumpe2fs", device], capture=True)
    per_group = int(re.search(r"^Inodes per group:\s+(\d+)", report, re.M).group(1))
    first = int(re.search(r"^First inode:\s+(\d+)", report, re.M).group(1))
    used = [ROOT_INODE]
    for group, free_ranges in enumerate(re.findall(r"^  Free inodes: ?(.*)$", report, re.M)):
        free: set[int] = set()
        for span in filter(None, (s.strip() for s in free_ranges.split(","))):
            low, _, high = span.partition("-")
            free.update(range(int(low), int(high or low) + 1))
        used += [inode for inode in range(group * per_group + 1, (group + 1) * per_group + 1)
                 if inode >= first and inode not in free]
    return used


def partitions(image: Path) -> list[Partition]:
    """The image's partitions as its MBR describes them."""
    table = json.loads(run(["sfdisk", "-J", str(image)], capture=True))["partitiontable"]
    sector = table.get("sectorsize", SECTOR)
    return [Partition(i + 1, p["start"] * sector, p["size"] * sector, p["type"])
            for i, p in enumerate(table.get("partitions", []))]


def partitions_of_image(image: Path, what: str) -> list[Partition]:
    """The partitions of a file a user gave as a disk image; UserError when it is none."""
    try:
        found = partitions(image)
    except BuildError:
        found = []
    if not found:
        raise UserError(f"{what}: expected a disk image with a partition table, got a file "
                        "without one")
    return found


def disk_id(image: Path) -> int:
    """The MBR disk identifier (what PARTUUIDs such as 1a2b3c4d-02 begin with)."""
    table = json.loads(run(["sfdisk", "-J", str(image)], capture=True))["partitiontable"]
    return int(table.get("id", "0x0"), 16)


@contextlib.contextmanager
def loop_attached(image: Path, part: Partition, read_only: bool = True):
    """A loop device over one partition of the image; detached on every exit path."""
    ro = ["--read-only"] if read_only else []
    device = run(["losetup", "--find", "--show", *ro, "--offset", str(part.start),
                  "--sizelimit", str(part.size), str(image)], capture=True).strip()
    with cleanup.undone(lambda: run(["losetup", "--detach", device])):
        yield Path(device)


@contextlib.contextmanager
def mounted_ext4(image: Path, part: Partition):
    """The ext4 partition mounted read-only on a temporary folder; unmounted on every exit."""
    with loop_attached(image, part) as device, mounts.on_temporary_folder(
            ["mount", "-t", "ext4", "-o", "ro,noload", str(device)], "clusterlab-mnt-") as point:
        yield point


def fat_read(image: Path, part: Partition, name: str) -> bytes:
    """One file from the FAT partition, read with mtools (no vfat driver needed)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "file"
        run(["mcopy", "-n", "-i", f"{image}@@{part.start}", f"::/{name}", str(out)],
            env=MTOOLS_ENV)
        return out.read_bytes()


def fat_write(image: Path, part: Partition, name: str, content: bytes) -> None:
    """Replace one file on the FAT partition (as a user editing the card would)."""
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / name
        source.write_bytes(content)
        run(["mcopy", "-o", "-i", f"{image}@@{part.start}", str(source), f"::/{name}"],
            env=MTOOLS_ENV)


def fat_list(image: Path, part: Partition) -> list[str]:
    """Names of the files at the top of the FAT partition."""
    listing = run(["mdir", "-b", "-i", f"{image}@@{part.start}", "::/"], env=MTOOLS_ENV,
                  capture=True)
    return sorted(line.rsplit("/", 1)[-1] for line in listing.splitlines() if line.strip())


def log_layout(parts: list[Partition]) -> None:
    for p in parts:
        log.info(f"partition {p.number}: type {p.type}, start {p.start // MIB} MiB, "
                 f"size {p.size // MIB} MiB")
