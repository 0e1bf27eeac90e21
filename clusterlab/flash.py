"""Write an image onto an SD card, or into a file, and give the card its own settings.

With the image's .bmap only the mapped blocks are written, each range checked against the bmap's
sha256 as it goes and read back from the card afterwards; without one every byte is written and
the whole is read back and compared. Per-card settings (hostname, a login key, a user-data file)
go into the boot partition once the image is verified.
"""

import contextlib
import dataclasses
import errno
import hashlib
import os
import re
import stat
import sys
import tempfile
import time
import xml.etree.ElementTree as ElementTree
from pathlib import Path

from clusterlab_node import settings as cluster_schema

from . import card, compression, config, disk, export, log, mounts, yamlfile
from .errors import BuildError, UserError, shown
from .run import run

CHUNK = 4 << 20
MIB = 1 << 20
MAX_BOOT_END = 1 << 30  # the boot partition of an image ends within its first GiB
MAX_IMAGE = 1 << 41  # bytes: no card is larger


@dataclasses.dataclass(frozen=True)
class BlockMap:
    image_size: int
    block_size: int
    ranges: list[tuple[int, int, str]]  # first block, last block, sha256 of the range

    @property
    def mapped_bytes(self) -> int:
        return sum((last - first + 1) * self.block_size for first, last, _ in self.ranges)


@dataclasses.dataclass(frozen=True)
class Target:
    path: Path
    is_block_device: bool
    size: int  # bytes; 0 for a file that does not exist yet
    description: str


@dataclasses.dataclass(frozen=True)
class CardSettings:
    hostname: str | None = None
    user: str = "pi"
    ssh_key: str | None = None
    user_data: str | None = None  # a whole cloud-config document, replacing the image's


@dataclasses.dataclass(frozen=True)
class Result:
    bytes_written: int
    image_size: int
    seconds: float
    used_bmap: bool


# inputs

def raw_name(image: Path) -> str:
    """foo.img for foo.img and foo.img compressed (foo.img.xz, …)."""
    name = image.name
    suffix = Path(name).suffix
    return name[:-len(suffix)] if suffix in compression.BY_SUFFIX else name


def check_image(image: Path) -> None:
    """Refuse, before anything is written, what is not an image to flash: no partition table,
    or a boot partition without the seed files a card is set up with."""
    if not image.is_file():
        raise UserError(f"{image}: no such image file")
    if not raw_name(image).endswith(".img"):
        raise UserError(f"{image}: expected an {compression.image_names()} file")
    with tempfile.TemporaryDirectory(prefix="clusterlab-head-") as tmp:
        head = _head(image, Path(tmp) / "head.img", MIB)
        boot = disk.partitions_of_image(head, str(image))[0]
        if boot.start + boot.size > MAX_BOOT_END:
            raise UserError(f"{image}: expected a boot partition within the first "
                            f"{MAX_BOOT_END >> 30} GiB, got one ending at byte "
                            f"{boot.start + boot.size}")
        head = _head(image, head, boot.start + boot.size)
        try:
            names = disk.fat_list(head, boot)
        except BuildError:
            names = []
    missing = [name for name in card.SEED_FILES if name not in names]
    if missing:
        raise UserError(f"{image}: expected a boot partition holding "
                        f"{' and '.join(card.SEED_FILES)}, got one without {missing[0]}")


def _head(image: Path, target: Path, size: int) -> Path:
    """The image itself when raw, else its first size bytes decompressed into target."""
    if image.suffix == ".img":
        return image
    compressed = compression.BY_SUFFIX[image.suffix]
    unreadable = UserError(f"{image}: expected an image compressed as its suffix says, got a "
                           f"file that {compressed.name} cannot read whole")
    try:
        run([*compressed.check, str(image)], capture=True)
    except BuildError:
        raise unreadable from None
    if export.decompressed_head(image, target, size) < min(size, MIB):
        raise unreadable
    return target


def read_bmap(path: Path) -> BlockMap:
    """A bmaptool block map (format 2), after checking its own checksum and its sense."""
    text = yamlfile.text_of(_read_bytes(path, str(path)), str(path))
    try:
        root = ElementTree.fromstring(text)
    except ElementTree.ParseError as e:
        raise UserError(f"{path}: expected a block map (bmap XML), got unreadable XML: {e}") \
            from None
    recorded = (root.findtext("BmapFileChecksum") or "").strip()
    if not root.get("version", "").startswith("2.") or \
            (root.findtext("ChecksumType") or "").strip() != "sha256":
        raise UserError(f"{path}: expected a bmap of version 2 with sha256 checksums")
    # the file's checksum is taken with its own value replaced by zeros
    zeroed = text.replace(recorded, "0" * len(recorded), 1)
    if not recorded or hashlib.sha256(zeroed.encode()).hexdigest() != recorded:
        raise UserError(f"{path}: the block map is damaged (its checksum does not match)")
    image_size = _bmap_number(path, root.findtext("ImageSize"), "ImageSize", 1, MAX_IMAGE)
    block_size = _bmap_number(path, root.findtext("BlockSize"), "BlockSize", 512, 1 << 20)
    last_block = (image_size - 1) // block_size
    ranges = []
    for item in root.iter("Range"):
        span, checksum = (item.text or "").strip(), item.get("chksum", "")
        match = re.fullmatch(r"(\d{1,15})(?:-(\d{1,15}))?", span)
        first, last = (int(match[1]), int(match[2] or match[1])) if match else (1, 0)
        if not match or first > last or last > last_block \
                or not re.fullmatch(r"[0-9a-f]{64}", checksum):
            raise UserError(f"{path}: Range: expected FIRST-LAST blocks within the image's "
                            f"{last_block + 1} with a sha256, got {shown(span)}")
        ranges.append((first, last, checksum))
    ranges.sort()
    if any(a[1] >= b[0] for a, b in zip(ranges, ranges[1:])):
        raise UserError(f"{path}: Range: expected ranges that do not overlap, got overlapping ones")
    return BlockMap(image_size, block_size, ranges)


def _bmap_number(path: Path, text: str | None, name: str, low: int, high: int) -> int:
    value = (text or "").strip()
    if not re.fullmatch(r"\d{1,20}", value) or not low <= int(value) <= high:
        raise UserError(f"{path}: {name}: expected a number from {low} to {high}, got "
                        f"{shown(value)}")
    return int(value)


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise UserError(f"{what}: cannot read it: {e.strerror}") from None


def card_settings(hostname: str | None, user: str, ssh_key_file: Path | None,
                  user_data_file: Path | None) -> CardSettings:
    """Every per-card input checked before anything is written."""
    if hostname is not None and not re.fullmatch(cluster_schema.HOSTNAME, hostname):
        raise UserError(f"--hostname {shown(hostname)}: expected lower-case letters, digits and "
                        "'-' (at most 63, not starting or ending with '-')")
    if not re.fullmatch(config.USERNAME, user):
        raise UserError(f"--user {shown(user)}: expected a user name such as pi")
    key = None
    if ssh_key_file is not None:
        key = _read(ssh_key_file, "--ssh-key").strip()
        if not re.fullmatch(config.SSH_KEY, key):
            raise UserError(f"--ssh-key {ssh_key_file}: expected one OpenSSH public key "
                            "(ssh-ed25519 AAAA… comment); is it the private key?")
    user_data = None
    if user_data_file is not None:
        user_data = _read(user_data_file, "--user-data")
        if not user_data.startswith("#cloud-config\n"):
            raise UserError(f"--user-data {user_data_file}: a cloud-config file starts with the "
                            "line #cloud-config")
        # as cloud-init will read it, dates included
        document = yamlfile.load(user_data, f"--user-data {user_data_file}", dates=True)
        if not isinstance(document, dict):
            raise UserError(f"--user-data {user_data_file}: expected a YAML mapping of "
                            "cloud-config settings")
    return CardSettings(hostname, user, key, user_data)


def _read(path: Path, option: str) -> str:
    return yamlfile.text_of(_read_bytes(path, f"{option} {path}"), f"{option} {path}")


# the target and its safety

def inspect_target(path: Path) -> Target:
    """What the target is; refuses what must never be written: not a block device or regular
    file, mounted, in use, or the disk of the running system's root."""
    if not path.exists():
        if not path.parent.is_dir():
            raise UserError(f"{path}: no such device or folder")
        return Target(path, False, 0, f"{path} (a new file)")
    mode = path.stat().st_mode
    if stat.S_ISREG(mode):
        if _is_mounted(path.resolve()):
            raise UserError(f"{path}: the file is mounted (as a loop device); unmount it first")
        return Target(path, False, path.stat().st_size, f"{path} (a file)")
    if not stat.S_ISBLK(mode):
        raise UserError(f"{path}: not a block device or a regular file")
    disk_name = _whole_disk(path)
    if disk_name == _root_disk():
        raise UserError(f"{path}: holds the running system's root file system; refusing")
    busy = _mounted_parts(disk_name)
    if busy:
        raise UserError(f"{path}: mounted ({', '.join(busy)}); unmount it first "
                        f"(e.g. sudo umount {busy[0].split(' on ')[0]})")
    sys_dir = Path("/sys/class/block") / disk_name
    # the disk's holders, and its partitions' (an LVM volume or RAID member on sdb1)
    holders = sorted(h.name for h in sys_dir.glob("holders/*")) + \
        sorted(h.name for h in sys_dir.glob(f"{disk_name}*/holders/*"))
    if holders:
        raise UserError(f"{path}: in use by {', '.join(holders)}")
    size = int((sys_dir / "size").read_text()) * 512
    model = _first_line(sys_dir / "device/model") or _first_line(sys_dir / "device/name") or "?"
    removable = _first_line(sys_dir / "removable") == "1"
    return Target(path, True, size, f"{path}: {model}, {size / 1e9:.1f} GB, "
                                    f"{'removable' if removable else 'NOT removable'}")


def _first_line(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def _disk_named(number: int) -> str | None:
    """The disk a device number is or belongs to (mmcblk0 for mmcblk0p2); None if no block
    device has it (a root in a container or on tmpfs)."""
    sys_path = Path(f"/sys/dev/block/{os.major(number)}:{os.minor(number)}")
    if not sys_path.exists():
        return None
    sys_path = sys_path.resolve()
    return sys_path.parent.name if (sys_path / "partition").exists() else sys_path.name


def _whole_disk(device: Path) -> str | None:
    return _disk_named(device.stat().st_rdev)


def _root_disk() -> str | None:
    return _disk_named(os.stat("/").st_dev)


def _mounts() -> list[tuple[str, str]]:
    used = [(source, str(point)) for source, point in mounts.table()]
    for line in Path("/proc/swaps").read_text().splitlines()[1:]:
        used.append((line.split()[0], "swap"))
    return used


def _mounted_parts(disk_name: str) -> list[str]:
    busy = []
    for source, point in _mounts():
        if source.startswith("/dev/") and Path(source).exists():
            with contextlib.suppress(OSError):
                if stat.S_ISBLK(Path(source).stat().st_mode) and \
                        _whole_disk(Path(source)) == disk_name:
                    busy.append(f"{source} on {point}")
    return busy


def _is_mounted(file: Path) -> bool:
    """Whether a loop device is backed by this file and mounted."""
    for loop in Path("/sys/class/block").glob("loop*/loop/backing_file"):
        if Path(_first_line(loop)) == file and _mounted_parts(loop.parent.parent.name):
            return True
    return False


def confirm(target: Target, image: Path, yes: bool) -> None:
    if yes or (not target.is_block_device and target.size == 0):
        return
    if not sys.stdin.isatty():
        raise UserError(f"{target.path}: not overwriting without confirmation; add --yes")
    try:
        answer = input(f"Write {image.name} onto\n  {target.description}\nEverything on it is "
                       "lost. Type yes to go on: ")
    except EOFError:  # Ctrl-D
        answer = ""
    if answer.strip() != "yes":
        raise UserError("not written")


# writing and verifying

def _read_exactly(stream, size: int) -> bytes:
    chunks, wanted = [], size
    while wanted:
        chunk = stream.read(min(wanted, CHUNK))
        if not chunk:
            break
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)


def _skip(stream, size: int, bar) -> None:
    if stream.seekable():  # a raw image: its unmapped blocks are not even read
        stream.seek(size, os.SEEK_CUR)
        bar.update(size)
        return
    while size:
        chunk = stream.read(min(size, CHUNK))
        if not chunk:
            raise BuildError("the image ends before its block map says it does")
        size -= len(chunk)
        bar.update(len(chunk))


def write_mapped(stream, fd: int, bmap: BlockMap) -> int:
    """Write the mapped ranges at their offsets, each checked against the bmap; bytes written."""
    position, written = 0, 0
    with log.progress(bmap.image_size, "write (bmap)") as bar:
        for first, last, checksum in bmap.ranges:
            start, end = first * bmap.block_size, min((last + 1) * bmap.block_size,
                                                      bmap.image_size)
            _skip(stream, start - position, bar)
            digest = hashlib.sha256()
            offset = start
            while offset < end:
                chunk = _read_exactly(stream, min(CHUNK, end - offset))
                if not chunk:
                    raise BuildError("the image ends before its block map says it does")
                digest.update(chunk)
                _write_at(fd, chunk, offset)
                offset += len(chunk)
                bar.update(len(chunk))
            if checksum and digest.hexdigest() != checksum:
                raise BuildError(f"blocks {first}-{last} of the image do not match its block map: "
                                 "the image is damaged, or the bmap belongs to another image")
            written += end - start
            position = end
        # to the end, so that a truncated image is noticed and the decompressor ends normally
        _skip(stream, bmap.image_size - position, bar)
    return written


def write_all(stream, fd: int, size: int) -> tuple[int, str]:
    """Write every byte; (bytes written, their sha256)."""
    digest, offset = hashlib.sha256(), 0
    with log.progress(size or None, "write") as bar:
        while chunk := stream.read(CHUNK):
            digest.update(chunk)
            _write_at(fd, chunk, offset)
            offset += len(chunk)
            bar.update(len(chunk))
    return offset, digest.hexdigest()


def _write_at(fd: int, data: bytes, offset: int) -> None:
    """All of data at offset: a write may take only part of it, and one that takes nothing
    means the card ends there."""
    view = memoryview(data)
    while view:
        try:
            written = os.pwrite(fd, view, offset)
        except OSError as e:
            if e.errno == errno.ENOSPC:
                raise UserError(f"the target is full after {offset / 1e9:.1f} GB: it is smaller "
                                "than the image") from None
            raise
        if written == 0:
            raise BuildError(f"the card took no more bytes at byte {offset}: it is smaller "
                             "than the image, or failing")
        view, offset = view[written:], offset + written


def _read_back(fd: int, start: int, end: int, bar) -> str:
    digest = hashlib.sha256()
    for offset in range(start, end, CHUNK):
        chunk = os.pread(fd, min(CHUNK, end - offset), offset)
        if len(chunk) != min(CHUNK, end - offset):
            raise BuildError(f"reading back at byte {offset}: the card is shorter than written")
        digest.update(chunk)
        bar.update(len(chunk))
    return digest.hexdigest()


def verify_mapped(fd: int, bmap: BlockMap) -> None:
    with log.progress(bmap.mapped_bytes, "verify") as bar:
        for first, last, checksum in bmap.ranges:
            end = min((last + 1) * bmap.block_size, bmap.image_size)
            if _read_back(fd, first * bmap.block_size, end, bar) != checksum:
                raise BuildError(f"verification failed: blocks {first}-{last} read back from the "
                                 "card differ from the image (a failing card or reader?)")


def verify_all(fd: int, size: int, expected: str) -> None:
    with log.progress(size, "verify") as bar:
        if _read_back(fd, 0, size, bar) != expected:
            raise BuildError("verification failed: the card does not read back as written "
                             "(a failing card or reader?)")


@dataclasses.dataclass(frozen=True)
class Beside:
    """What lies beside the image and says what it must be: its block map, its checksum."""
    bmap: BlockMap | None
    sha256: str | None  # from the .sha256 file, used without a block map


def read_beside(image: Path) -> Beside:
    """The .bmap and .sha256 beside the image, read and checked before anything is written."""
    bmap_path = image.with_name(raw_name(image) + ".bmap")
    listed = image.with_name(image.name + ".sha256")
    return Beside(read_bmap(bmap_path) if bmap_path.exists() else None,
                  _listed_sha256(listed, image.name) if listed.exists() else None)


def _listed_sha256(listed: Path, name: str) -> str:
    fields = yamlfile.text_of(_read_bytes(listed, str(listed)), str(listed)).split()
    if len(fields) < 2 or not re.fullmatch(r"[0-9a-f]{64}", fields[0]) \
            or fields[1].lstrip("*") != name:
        raise UserError(f"{listed}: expected a sha256sum line for {name} (64 hex digits, "
                        f"two spaces, the name), got {shown(' '.join(fields[:2]))}")
    return fields[0]


def _check_sha256(image: Path, expected: str) -> None:
    with log.step(f"check {image.name} against its .sha256"):
        if export.sha256_of(image) != expected:
            raise UserError(f"{image}: does not match its .sha256: the file is damaged; "
                            "download or build it again")


def _drop_cache(fd: int) -> None:
    """Forget the cached pages, so the verification reads what reached the card."""
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)


def write_image(image: Path, target: Target, beside: Beside) -> Result:
    bmap = beside.bmap
    if bmap is None and beside.sha256:
        _check_sha256(image, beside.sha256)
    # known from the block map, or from a raw image's own size (a compressed one without a
    # block map is found too large only when the card is full)
    known = bmap.image_size if bmap else image.stat().st_size if image.suffix == ".img" else 0
    if target.is_block_device and known > target.size:
        raise UserError(f"{target.path}: {target.size / 1e9:.1f} GB is smaller than the image "
                        f"({known / 1e9:.1f} GB)")
    start = time.monotonic()
    flags = os.O_RDWR | (os.O_EXCL if target.is_block_device else os.O_CREAT)
    try:
        fd = os.open(target.path, flags, 0o644)
    except OSError as e:
        raise UserError(f"{target.path}: cannot open it for writing: {e.strerror}") from None
    try:
        with export.decompressed(image) as stream:
            if bmap:
                _grow_file(fd, target, bmap.image_size)
                written = write_mapped(stream, fd, bmap)
                size = bmap.image_size
            else:
                written, digest = write_all(stream, fd, image.stat().st_size
                                            if image.suffix == ".img" else 0)
                size = written
        _clear_tail(fd, target, size)
        _drop_cache(fd)
        if bmap:
            verify_mapped(fd, bmap)
        else:
            verify_all(fd, size, digest)
    finally:
        os.close(fd)
    return Result(written, size, time.monotonic() - start, bmap is not None)


def _grow_file(fd: int, target: Target, size: int) -> None:
    """A file target is made as long as the image (never shorter than it was): the unmapped
    blocks are then holes that read as zeros."""
    if not target.is_block_device and os.fstat(fd).st_size < size:
        os.ftruncate(fd, size)


def _clear_tail(fd: int, target: Target, size: int) -> None:
    """A file target longer than the image keeps its length (a larger card) but not what its
    old tail held: cut to the image and grown back, the tail reads as zeros."""
    length = os.fstat(fd).st_size
    if not target.is_block_device and length > size:
        os.ftruncate(fd, size)
        os.ftruncate(fd, length)


def personalize(target: Path, settings: CardSettings) -> None:
    if settings.user_data is not None:
        boot = disk.partitions(target)[0]
        disk.fat_write(target, boot, "user-data", settings.user_data.encode())
    card.personalize(target, hostname=settings.hostname, user=settings.user,
                     ssh_key=settings.ssh_key)


def flash(image: Path, device: Path, settings: CardSettings, yes: bool) -> Result:
    check_image(image)
    beside = read_beside(image)
    target = inspect_target(device)
    if target.size and os.path.samefile(image, device):
        raise UserError(f"--device {device}: expected a card or another file, got the image "
                        "itself")
    confirm(target, image, yes)
    with log.step(f"write {image.name} onto {target.path}"):
        result = write_image(image, target, beside)
    if settings.hostname or settings.ssh_key or settings.user_data is not None:
        with log.step("per-card settings on the boot partition"):
            personalize(target.path, settings)
    os.sync()
    return result
