"""The build, as a flat list of steps: base → stages → finish → assemble → export."""

import contextlib
import dataclasses
import hashlib
import json
import os
import time
import uuid
from pathlib import Path
from typing import ClassVar

from clusterlab_node import settings as cluster_schema

from . import chroot, cluster, disk, export, folders, layers, log, run, tree
from .arch import ARCHES
from .base import debian, image as downloaded
from .compression import FORMATS
from .config import Config
from .containers import bake
from .errors import BuildError, UserError
from .render import Renderer
from .stages import Stage, discover
from .version import source_date_epoch, version

MIB = 1 << 20
BOOTFS = "bootfs"  # beside upper/ in the last layer: what goes on the FAT partition


@dataclasses.dataclass(frozen=True)
class Project:
    """Where a checkout keeps what goes into an image: stages, the templates and overlay files
    they name, and the node's Python packages (the agent, the demos)."""
    root: Path
    FOLDERS: ClassVar = ("stages", "overlay-files", "templates", "node")

    @property
    def stages(self) -> list[Stage]:
        return discover(*(self.root / folder for folder in self.FOLDERS))


@dataclasses.dataclass(frozen=True)
class Outputs:
    image: Path  # raw .img
    compressed: Path
    checksum: Path
    bmap: Path
    manifest: Path


def output_paths(config: Config, project: Project, name: str) -> Outputs:
    folder = folders.output_dir(config, project.root)
    compressed = folder / f"{name}.img{FORMATS[config['image.compression']].suffix}"
    return Outputs(folder / f"{name}.img", compressed, Path(f"{compressed}.sha256"),
                   folder / f"{name}.img.bmap", folder / f"{name}.manifest.json")


def template_variables(config: Config, image_version: str) -> dict:
    return {"config": config.nested(), "version": image_version, "arch": config["arch"],
            "boot_label": disk.BOOT_LABEL, "root_label": disk.ROOT_LABEL,
            "consoles": ARCHES[config["arch"]].consoles,
            "kernel_package": ARCHES[config["arch"]].kernel_package,
            "boot_mount": boot_mount_of(config), "cluster_settings": [
                {"key": key, "value": value, "doc": cluster_schema.BY_KEY[key].doc}
                for key, value in cluster.document(config, image_version).items()]}


def boot_mount_of(config: Config) -> str:
    """Where the image mounts its boot partition: Debian's place, or the downloaded base's."""
    if config["base.source"] == "download":
        return downloaded.source(config).boot_mount
    return tree.FIRMWARE


def identity(image_version: str, arch: str, epoch: int) -> disk.Identity:
    seed = hashlib.sha256(f"clusterlab {image_version} {arch} {epoch}".encode()).digest()
    return disk.Identity(int.from_bytes(seed[:4], "big"), int.from_bytes(seed[4:8], "big"),
                         str(uuid.UUID(bytes=seed[8:24], version=4)), epoch)


def require_root() -> None:
    if os.geteuid() != 0:
        raise UserError("building needs root: it uses chroot, bind mounts, loop devices and "
                        "binfmt_misc (run 'sudo make image')")


def build(config: Config, project: Project) -> Outputs:
    start = time.monotonic()
    require_root()
    image_version = version(project.root)
    epoch = source_date_epoch(project.root)
    name = f"clusterlab-{image_version}-{config['arch']}"
    outputs = output_paths(config, project, name)
    with folders.in_use(config.cache_dir):
        try:
            outcome = _build(config, project, image_version, epoch, name, outputs)
        except BaseException:
            _write_steps(outputs, name, "failed", time.monotonic() - start)
            raise
        _write_steps(outputs, name, outcome, time.monotonic() - start)
    return outputs


def _build(config: Config, project: Project, image_version: str, epoch: int, name: str,
           outputs: Outputs) -> str:
    """The build once its outputs are named; returns its outcome, "built" or "unchanged"."""
    stages = project.stages
    renderer = Renderer(project.root / "templates", template_variables(config, image_version))
    if not config["users"]:
        log.warn("no users configured: nobody can log in to this image until a user with an "
                 "SSH key is added to user-data on the card's boot partition (see README)")
    log.info(f"building {name} ({sum(s.runs_on(config['base.source']) for s in stages)} stages)")
    cache = layers.LayerCache(config.cache_dir)
    with log.step("prepare emulation: qemu-user for " + config["arch"], name="emulation"):
        chroot.prepare_emulation(config["arch"])
    # the container images need no emulation and mostly wait for the network and the disk:
    # they are made while the stages keep the processors busy
    images = log.Background(lambda: bake.obtain(config, epoch))
    try:
        tree_layers = _tree_layers(config, project, cache, renderer, epoch, images)
    except BaseException:
        run.stop_all()  # what the images are waiting for
        raise
    stack, key = tree_layers.stack, tree_layers.key
    bootfs = stack[-1] / BOOTFS

    ident = identity(image_version, config["arch"], epoch)
    if tree_layers.disk_id is not None:  # the vendor's settings may name partitions by PARTUUID
        ident = dataclasses.replace(ident, disk_id=tree_layers.disk_id)
    input_key = layers.key_of(key, dataclasses.asdict(ident), config.nested())
    if _up_to_date(outputs, input_key):
        log.info(f"{name}: nothing changed since the last build (input key {input_key})")
        return "unchanged"
    folders.make(outputs.image.parent)
    with export.published_together(dataclasses.astuple(outputs)) as staged, \
            layers.overlay(stack) as rootfs:
        raw = staged[outputs.image]
        with log.step("assemble image", name="assemble"):
            boot_data, root_data = disk.tree_bytes(bootfs), disk.tree_bytes(rootfs)
            # the raw image is sparse (it takes its data) and the compressed one less than half
            disk.require_free_space(outputs.image.parent, (boot_data + root_data) * 3 // 2,
                                    "the image and its compressed copy")
            boot_size = boot_data + config["image.boot_headroom_mib"] * MIB
            root_size = int(root_data * 1.1) + config["image.root_headroom_mib"] * MIB
            disk.log_layout(disk.assemble(raw, bootfs, rootfs, boot_size, root_size, ident))
            packages = export.installed_packages(rootfs)
        with log.step("bmap", name="bmap"):
            export.write_bmap(raw, staged[outputs.bmap])
        with log.step(f"compress ({config['image.compression']})", name="compress"):
            export.compress(raw, staged[outputs.compressed], config["image.compression"])
        with log.step("checksum and manifest", name="manifest"):
            digest = export.write_sha256(staged[outputs.compressed], staged[outputs.checksum])
            export.write_manifest(staged[outputs.manifest], _manifest(
                config, outputs, raw, ident, input_key, packages, digest, tree_layers.archive,
                containers=[image.manifest_entry() for image in tree_layers.baked],
                name=name, version=image_version,
                stages=[s.name for s in stages if s.runs_on(config["base.source"])]))
    cache.remove_leftovers(keep={p.name for p in stack})
    for path in dataclasses.astuple(outputs):
        log.info(f"wrote {path}")
    log.info(f"cache: {folders.size(config.cache_dir) / 2**30:.1f} GiB in {config.cache_dir}")
    return "built"


def steps_path(outputs: Outputs) -> Path:
    """The record of the build's steps, beside the manifest. Every build writes it, also one
    that failed or found nothing changed: it is of the build, no output (see _up_to_date)."""
    return outputs.manifest.with_name(
        outputs.manifest.name.removesuffix(".manifest.json") + ".steps.json")


def _write_steps(outputs: Outputs, name: str, outcome: str, seconds: float) -> None:
    """{"name", "outcome": "built" | "unchanged" | "failed", "seconds", "steps":
    log.recorded_steps()}. For a failed build, not writing it is only warned about: the
    build's own error is the one to report."""
    path = steps_path(outputs)
    try:
        folders.make(path.parent)
        with export.written_atomically(path) as partial:
            partial.write_text(json.dumps({"name": name, "outcome": outcome,
                                           "seconds": round(seconds, 1),
                                           "steps": log.recorded_steps()}, indent=2) + "\n")
    except Exception as e:
        if outcome != "failed":
            raise BuildError(f"could not write the build's step record {path}: {e}") from e
        log.warn(f"could not write the build's step record {path}: {e}")


@dataclasses.dataclass(frozen=True)
class TreeLayers:
    stack: list[Path]  # the layers, bottom first
    key: str  # the top layer's key
    archive: list[dict[str, str]]  # the Debian archive's state, or the image, they came from
    baked: list[bake.Baked]  # the container images in the tree
    disk_id: int | None  # a downloaded base image's MBR disk id, kept in the output


def _tree_layers(config: Config, project: Project, cache: layers.LayerCache, renderer: Renderer,
                 epoch: int, images: log.Background) -> TreeLayers:
    """The layers of the shipped tree: base, stages, container images, finish, strip."""
    apt_cache = config.cache_dir / "apt-archives"
    # the code that shapes the tree is an input of every layer
    package = Path(__file__).parent
    builder = layers.digest_files([package / "tree.py", package / "chroot.py",
                                   package / "base/debian.py", tree.BYTECODE_COMPILER], package)
    stack: list[Path] = []
    boot_mount, disk_id = boot_mount_of(config), None
    if config["base.source"] == "download":
        src = downloaded.source(config)
        sha256 = downloaded.checksum(src)
        raw = downloaded.obtain(src, sha256, config.cache_dir)
        archive = [{"source": src.url, "sha256": sha256}]
        disk_id = disk.disk_id(raw)
        key = layers.key_of("base", builder, "download", sha256, boot_mount,
                            layers.digest_files([package / "base/image.py"], package))
        with log.step(f"base: {src.url.rsplit('/', 1)[-1]}", name="base"):
            stack.append(_layer(cache, key, stack, lambda root, _: _make_downloaded_base(
                raw, root, src, apt_cache), base=True))
    else:
        archive = debian.archive_state(debian.apt_sources(config))
        key = layers.key_of("base", builder, debian.base_key(config, archive))
        with log.step(f"base: Debian {config['base.suite']} {config['arch']}", name="base"):
            stack.append(_layer(cache, key, stack, lambda root, _: _make_base(config, root),
                                base=True))
    stages = [s for s in project.stages if s.runs_on(config["base.source"])]
    for stage, key in stage_keys(key, stages, renderer, project):
        with log.step(f"stage {stage.name}: {stage.description}", name=f"stage {stage.name}"):
            stack.append(_layer(cache, key, stack, lambda root, _: _in_chroot(
                root, apt_cache, lambda: tree.apply_stage(root, stage, renderer, boot_mount))))
    with log.step("container images", name="containers"):
        baked = images.result()
    key = layers.key_of(key, "containers", bake.layer_inputs(baked))
    with log.step("container images into the tree", name="containers into tree"):
        stack.append(_layer(cache, key, stack, lambda root, _: bake.place(baked, root)))
    key = layers.key_of(key, "finish")
    with log.step("finish tree", name="finish"):
        initramfs_cache = config.cache_dir / "initramfs"
        stack.append(_layer(cache, key, stack, lambda root, _: _in_chroot(
            root, apt_cache, lambda: tree.finish(root, initramfs_cache))))
    key = layers.key_of(key, "strip", epoch, layers.digest_files([Path(__file__)], package))
    with log.step("strip tree", name="strip"):
        stack.append(_layer(cache, key, stack, lambda root, layer: _strip(root, layer, epoch,
                                                                          boot_mount)))
    return TreeLayers(stack, key, archive, baked, disk_id)


def _manifest(config: Config, outputs: Outputs, raw: Path, ident: disk.Identity, input_key: str,
              packages: list[dict], compressed_sha256: str, archive: list[dict[str, str]],
              **about) -> dict:
    """What the image is and what it was made from: with the same project, config,
    SOURCE_DATE_EPOCH and package versions (the archive as of these dates, e.g. from
    snapshot.debian.org), a build gives the same bytes."""
    return {**about, "arch": config["arch"], "input_key": input_key,
            "source_date_epoch": ident.timestamp, "config": config.nested(),
            "config_sources": config.sources,
            "archive": archive, "packages": packages,
            "image": {"file": outputs.image.name, "bytes": raw.stat().st_size,
                      "sha256": export.sha256_of(raw), "disk_id": f"0x{ident.disk_id:08x}",
                      "boot_volume_id": f"0x{ident.boot_volume_id:08x}",
                      "root_uuid": ident.root_uuid},
            "compressed": {"file": outputs.compressed.name, "sha256": compressed_sha256}}


def stage_keys(base_key: str, stages: list[Stage], renderer: Renderer,
               project: Project) -> list[tuple[Stage, str]]:
    """The stages to run, each with its cache key, chained on the key of what came before."""
    chain, key = [], base_key
    for stage in stages:
        if not stage.skip:
            key = layers.key_of(key, stage_inputs(stage, renderer, project))
            chain.append((stage, key))
    return chain


def stage_inputs(stage: Stage, renderer: Renderer, project: Project) -> dict:
    """Everything a stage's result depends on. Templates count by their rendered text, so a
    stage is rebuilt exactly when a config value it uses changes."""
    return {"stage": stage.name,
            "files": layers.digest_files([stage.path], project.root),
            "packages": tree.packages_of(stage, renderer),
            "templates": {dst: renderer.render(src) for src, dst in stage.templates},
            "overlay": layers.digest_files([stage.overlay], project.root) if stage.overlay else None,
            "python_packages": layers.digest_files(list(stage.python_packages), project.root)}


def _layer(cache: layers.LayerCache, key: str, below: list[Path], make, base: bool = False) -> Path:
    """The cached layer for key; when missing, make(root, layer folder) makes it on top of the
    layers below (the base layer is made straight into its folder)."""
    if cache.has(key):
        log.from_cache()
    else:
        with cache.building(key) as partial:
            if base:
                make(partial / "upper", partial)
            else:
                with layers.overlay(below, partial) as root:
                    make(root, partial)
        log.built()
    cache.mark_used(key)
    return cache.path(key)


def _make_base(config: Config, root: Path) -> None:
    debian.bootstrap(config, root)
    _in_chroot(root, config.cache_dir / "apt-archives", lambda: tree.prepare(root))


def _make_downloaded_base(raw: Path, root: Path, src, apt_cache: Path) -> None:
    downloaded.extract(raw, root, src.boot_mount, src.url)
    # the vendor image ships without package lists: the stages install from its own sources
    _in_chroot(root, apt_cache, lambda: (chroot.run_in(root, tree.APT_UPDATE),
                                         tree.prepare(root)))


def _in_chroot(root: Path, apt_cache: Path, work) -> None:
    with chroot.mounted(root, apt_cache):
        work()


def _strip(root: Path, layer: Path, epoch: int, boot_mount: str) -> None:
    """The tree as it ships, the FAT's content moved beside it with its times set to the
    epoch (the root file system's times are set when it is made: disk.assemble)."""
    tree.strip(root)
    tree.split_boot(root, layer / BOOTFS, boot_mount)
    tree.set_mtimes(layer / BOOTFS, epoch)


def _up_to_date(outputs: Outputs, input_key: str) -> bool:
    if not all(p.exists() for p in dataclasses.astuple(outputs)):
        return False
    try:
        return json.loads(outputs.manifest.read_text()).get("input_key") == input_key
    except (OSError, ValueError):
        return False


def clean(config: Config, project: Project, cache: bool) -> list[tuple[Path, int]]:
    """Remove the output folder, and the caches when asked; return what went and its size."""
    places = [("image.output_dir", folders.output_dir(config, project.root))]
    if cache:
        require_root()
        places.append(("cache_dir", config.cache_dir))
    removed = []
    with contextlib.ExitStack() as held:
        if folders.made(config.cache_dir):  # never while a build uses it, nor its output
            held.enter_context(folders.in_use(config.cache_dir))
        for key, folder in places:
            size = folders.remove(config, key, folder)
            if size is not None:
                removed.append((folder, size))
    return removed
