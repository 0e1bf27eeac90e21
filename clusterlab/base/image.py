"""The downloaded base: a vendor's SD-card image (HypriotOS, Raspberry Pi OS, or any image with
a FAT boot and an ext4 root partition) fetched, checked, unpacked and copied into a tree.

The partitions come from the image's own partition table. The root partition is attached with a
read-only loop device at its offset and mounted; the boot partition is read with mtools. Both
work on kernels without MBR partition scanning or vfat, like this project's build machines.
"""

import dataclasses
import shutil
import zipfile
from pathlib import Path

from .. import disk, download, export, log
from ..compression import BY_SUFFIX, image_names
from ..config import Config
from ..errors import BuildError, UserError, shown
from ..run import run
from .presets import PRESETS

COMPRESSED = tuple(".img" + suffix for suffix in BY_SUFFIX)
ACCEPTED = (".img", *COMPRESSED, ".zip")  # the base image files that can be unpacked
FAT_TYPES = {"b", "c", "e", "6", "ef"}
LINUX_TYPE = "83"
CHUNK = 4 << 20


@dataclasses.dataclass(frozen=True)
class Source:
    url: str
    sha256: str  # empty: read from sha256_url
    sha256_url: str
    boot_mount: str


def source(config: Config) -> Source:
    """Where the base image comes from: a preset, or base.url and its checksum. Checked when
    the config is loaded, naming the file or --set that made the mistake."""
    preset, arch = config["base.preset"], config["arch"]
    where = config.last_source(["base.source", "base.preset", "base.url", "base.sha256",
                                "base.sha256_url", "arch"])
    if preset:
        known = PRESETS[preset]
        if known.arch != arch:
            fitting = ", ".join(name for name, p in PRESETS.items() if p.arch == arch)
            raise UserError(f"{where}: base.preset: expected a preset for arch {arch} "
                            f"({fitting}), got string '{preset}' (an {known.arch} image)")
        return Source(known.url, "", known.sha256_url, known.boot_mount)
    if not config["base.url"]:
        raise UserError(f"{where}: base.url: expected the address of the base image (base.source "
                        "is download and base.preset is empty), got nothing")
    if not config["base.url"].split("?")[0].lower().endswith(ACCEPTED):
        raise UserError(f"{where}: base.url: expected the address of an {image_names()} file, "
                        f"or a .zip holding one .img, got {shown(config['base.url'])}")
    if not (config["base.sha256"] or config["base.sha256_url"]):
        raise UserError(f"{where}: base.sha256: expected the checksum of base.url (or base."
                        "sha256_url, the address of a file listing it), got nothing")
    return Source(config["base.url"], config["base.sha256"], config["base.sha256_url"],
                  config["base.boot_mount"])


def checksum(src: Source) -> str:
    return src.sha256 or download.published_sha256(src.url, src.sha256_url)


def obtain(src: Source, sha256: str, cache: Path) -> Path:
    """The raw image: downloaded (or from the cache) and unpacked once."""
    fetched = download.fetch(src.url, sha256, cache / "downloads")
    return unpacked(fetched, cache / "base-images" / f"{sha256}.img")


def unpacked(file: Path, raw: Path) -> Path:
    """file as a raw image at raw: decompressed, or taken out of its zip."""
    if raw.exists():
        return raw
    raw.parent.mkdir(parents=True, exist_ok=True)
    partial = raw.with_name(raw.name + ".partial")
    name = file.name.lower()
    try:
        with log.step(f"unpack {file.name.split('-', 1)[-1]}"):
            _unpack(file, name, partial)
        try:
            disk.partitions(partial)
        except BuildError:
            raise UserError(f"{file.name}: not a disk image (no partition table in it)") from None
    except BaseException:
        partial.unlink(missing_ok=True)  # never a half-unpacked image in the cache
        raise
    partial.rename(raw)
    return raw


def _unpack(file: Path, name: str, target: Path) -> None:
    if name.endswith(".zip"):
        _unzip_one_image(file, target)
    elif name.endswith(COMPRESSED):
        _decompress(file, target)
    else:
        shutil.copyfile(file, target)  # .img: source() let nothing else through


def _unzip_one_image(file: Path, target: Path) -> None:
    try:
        archive = zipfile.ZipFile(file)
    except zipfile.BadZipFile:
        raise UserError(f"{file.name}: not a readable zip file") from None
    with archive:
        images = [m for m in archive.infolist() if m.filename.lower().endswith(".img")]
        if len(images) != 1:
            raise UserError(f"{file.name}: expected one .img in the zip, found {len(images)}"
                            + (f": {', '.join(m.filename for m in images)}" if images else ""))
        with archive.open(images[0]) as member, open(target, "wb") as out, \
                log.progress(images[0].file_size, "unzip") as bar:
            while chunk := member.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))


def _decompress(file: Path, target: Path) -> None:
    with export.decompressed(file) as stream, open(target, "wb") as out, \
            log.progress(None, "decompress") as bar:
        while chunk := stream.read(CHUNK):
            out.write(chunk)
            bar.update(len(chunk))


def extract(raw: Path, tree: Path, boot_mount: str, origin: str) -> None:
    """Copy the image's root file system into tree, its boot partition under boot_mount."""
    parts = disk.partitions(raw)
    boot = next((p for p in parts if p.type in FAT_TYPES), None)
    root = next((p for p in parts if p.type == LINUX_TYPE), None)
    types = ", ".join(p.type for p in parts) or "none"
    if root is None:
        raise UserError(f"{origin}: no Linux root partition (type 83) in its partition table "
                        f"(partition types: {types})")
    if boot is None:
        raise UserError(f"{origin}: no FAT boot partition in its partition table "
                        f"(partition types: {types})")
    tree.mkdir(parents=True, exist_ok=True)
    with disk.mounted_ext4(raw, root) as mounted:
        # -a keeps permissions, owners, times, hard links, extended attributes and ACLs
        run(["cp", "-a", f"{mounted}/.", str(tree)])
    boot_dir = tree / boot_mount.lstrip("/")
    boot_dir.mkdir(parents=True, exist_ok=True)
    if disk.fat_list(raw, boot):
        run(["mcopy", "-s", "-p", "-m", "-n", "-i", f"{raw}@@{boot.start}", "::/*",
             str(boot_dir)], env=disk.MTOOLS_ENV)
