"""The build, as a flat list of steps: base → stages → finish → assemble → export."""

import dataclasses
import hashlib
import os
import shutil
import uuid
from pathlib import Path

from . import chroot, disk, export, log, tree
from .base import debian
from .config import Config
from .errors import UserError
from .render import Renderer
from .stages import Stage, discover
from .version import source_date_epoch, version

MIB = 1 << 20
CONSOLES = {"arm64": "ttyS1,115200 tty0", "armhf": "ttyAMA0,115200 tty0"}
KERNEL_PACKAGES = {"arm64": "linux-image-arm64", "armhf": "linux-image-armmp"}


@dataclasses.dataclass(frozen=True)
class Project:
    """Where a checkout keeps its stages, templates and overlay files."""
    root: Path

    @property
    def stages(self) -> list[Stage]:
        return discover(self.root / "stages", self.root / "overlay-files", self.root / "templates")


@dataclasses.dataclass(frozen=True)
class Outputs:
    image: Path  # raw .img
    compressed: Path
    checksum: Path
    bmap: Path
    manifest: Path


def output_paths(config: Config, project: Project, name: str) -> Outputs:
    folder = project.root / config["image.output_dir"]
    ext = {"xz": "xz", "zstd": "zst"}[config["image.compression"]]
    return Outputs(folder / f"{name}.img", folder / f"{name}.img.{ext}",
                   folder / f"{name}.img.{ext}.sha256", folder / f"{name}.img.bmap",
                   folder / f"{name}.manifest.json")


def template_variables(config: Config, image_version: str) -> dict:
    return {"config": config.nested(), "version": image_version, "arch": config["arch"],
            "boot_label": disk.BOOT_LABEL, "root_label": disk.ROOT_LABEL,
            "consoles": CONSOLES[config["arch"]], "kernel_package": KERNEL_PACKAGES[config["arch"]]}


def identity(image_version: str, arch: str, epoch: int) -> disk.Identity:
    seed = hashlib.sha256(f"clusterlab {image_version} {arch} {epoch}".encode()).digest()
    return disk.Identity(int.from_bytes(seed[:4], "big"), int.from_bytes(seed[4:8], "big"),
                         str(uuid.UUID(bytes=seed[8:24], version=4)), epoch)


def require_root() -> None:
    if os.geteuid() != 0:
        raise UserError("building needs root: it uses chroot, bind mounts, loop devices and "
                        "binfmt_misc (run 'sudo make image')")


def build(config: Config, project: Project) -> Outputs:
    require_root()
    image_version = version(project.root)
    epoch = source_date_epoch(project.root)
    name = f"clusterlab-{image_version}-{config['arch']}"
    outputs = output_paths(config, project, name)
    stages = [s for s in project.stages if not s.skip]
    renderer = Renderer(project.root / "templates", template_variables(config, image_version))
    if not config["users"]:
        log.warn("no users configured: nobody can log in to this image until a user with an "
                 "SSH key is added to user-data on the card's boot partition (see README)")
    log.info(f"building {name} ({len(stages)} stages)")

    work = config.cache_dir / "work" / config["arch"]
    rootfs, bootfs = work / "tree", work / "bootfs"
    with log.step("prepare work folder"):
        _fresh_folder(work)
        rootfs.mkdir()
    with log.step("check host: qemu-user for " + config["arch"]):
        chroot.ensure_binfmt(config["arch"])
    with log.step("base: Debian " + config["base.suite"]):
        base_key = debian.build_base(config, rootfs)
    with chroot.mounted(rootfs, config.cache_dir / "apt-archives"):
        with log.step("prepare tree"):
            tree.prepare(rootfs)
        for stage in stages:
            with log.step(f"stage {stage.name}: {stage.description}"):
                tree.apply_stage(rootfs, stage, renderer)
        with log.step("finish tree"):
            tree.finish(rootfs)
    with log.step("strip tree"):
        packages = export.installed_packages(rootfs)
        tree.strip(rootfs)
        tree.split_boot(rootfs, bootfs)
        tree.clamp_mtimes(rootfs, epoch)
        tree.clamp_mtimes(bootfs, epoch)
    ident = identity(image_version, config["arch"], epoch)
    outputs.image.parent.mkdir(parents=True, exist_ok=True)
    with export.written_atomically(outputs.image) as raw:
        with log.step("assemble image"):
            boot_size = disk.tree_bytes(bootfs) + config["image.boot_headroom_mib"] * MIB
            root_size = int(disk.tree_bytes(rootfs) * 1.1) + config["image.root_headroom_mib"] * MIB
            disk.log_layout(disk.assemble(raw, bootfs, rootfs, boot_size, root_size, ident))
        with log.step("bmap"):
            export.write_bmap(raw, outputs.bmap)
        with log.step(f"compress ({config['image.compression']})"):
            export.compress(raw, outputs.compressed, config["image.compression"])
        with log.step("checksum and manifest"):
            digest = export.write_sha256(outputs.compressed, outputs.checksum)
            export.write_manifest(outputs.manifest, {
                "name": name, "version": image_version, "arch": config["arch"],
                "source_date_epoch": epoch, "config": config.nested(),
                "config_sources": config.sources, "base": {"key": base_key,
                                                           "apt_sources": debian.apt_sources(config)},
                "stages": [s.name for s in stages], "packages": packages,
                "image": {"file": outputs.image.name, "bytes": raw.stat().st_size,
                          "disk_id": f"0x{ident.disk_id:08x}",
                          "boot_volume_id": f"0x{ident.boot_volume_id:08x}",
                          "root_uuid": ident.root_uuid},
                "compressed": {"file": outputs.compressed.name,
                               "sha256": digest}})
    shutil.rmtree(work, ignore_errors=True)
    for path in dataclasses.astuple(outputs):
        log.info(f"wrote {path}")
    return outputs


def _fresh_folder(folder: Path) -> None:
    """An empty folder, even after a build that was killed with its chroot still mounted."""
    if folder.exists():
        chroot.unmount_all_below(folder)
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
