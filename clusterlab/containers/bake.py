"""The container images of a build: each obtained once (pulled or assembled from Debian
packages), kept in the cache as a docker-archive tarball, and placed into the image tree, where
a unit loads them into Docker on first boot.
"""

import dataclasses
import hashlib
import json
import shutil
import tarfile
from pathlib import Path

from .. import layers, log
from ..base import debian as debian_base
from ..config import Config
from ..errors import BuildError
from . import debian, registry
from .archive import write_docker_archive
from .spec import DebianSource, ImageSpec, parse

IMAGES_DIR = "var/lib/clusterlab/images"  # in the image tree, read by the load unit


@dataclasses.dataclass(frozen=True)
class Baked:
    spec: ImageSpec
    archive: Path  # the docker-archive tarball in the cache
    image_id: str
    origin: str  # where it came from, for the manifest

    def manifest_entry(self) -> dict:
        return {"name": self.spec.name, "tag": self.spec.tag, "source": self.origin,
                "image_id": self.image_id, "bytes": self.archive.stat().st_size}


def specs_of(config: Config) -> list[ImageSpec]:
    return [parse(name, entry) for name, entry in sorted(config["containers"].items())]


def obtain(config: Config, epoch: int) -> list[Baked]:
    """Every configured image as a docker-archive in the cache, made only when missing."""
    store = config.cache_dir / "containers"
    store.mkdir(parents=True, exist_ok=True)
    baked = []
    for spec in specs_of(config):
        with log.step(f"container image {spec.name} ({spec.tag})",
                      name=f"container image {spec.name}"):
            maker = _from_debian if isinstance(spec.source, DebianSource) else _from_registry
            baked.append(maker(spec, config, store, epoch))
    return baked


def _from_debian(spec: ImageSpec, config: Config, store: Path, epoch: int) -> Baked:
    suite = spec.source.suite or config["base.suite"]
    # another suite (an older release, for a package the image's suite no longer has) is
    # taken as released: its update suites are no longer kept complete on every mirror
    sources = (debian_base.apt_sources(config, suite) if suite == config["base.suite"]
               else [f"deb {config['base.mirror']} {suite} main"])
    package = Path(__file__).parents[1]
    code = layers.digest_files([Path(__file__).parent, package / "base/debian.py"], package)
    key = layers.key_of("debian-image", spec.tag, dataclasses.asdict(spec.source), config["arch"],
                        debian_base.archive_state(sources), code, epoch)
    target = store / f"{key}.tar"
    if target.exists():
        log.from_cache()
    else:
        # downloads apart from the image's: both are written while the other build runs
        debian.build(spec, config["arch"], suite, sources, config.cache_dir / "container-debs",
                     target, epoch)
        log.built()
    return Baked(spec, target, image_id_of(target),
                 f"debian {suite}: {', '.join(spec.source.packages)}")


def _from_registry(spec: ImageSpec, config: Config, store: Path, epoch: int) -> Baked:
    pulled = registry.pull(spec.source, config["arch"], config.cache_dir / "blobs")
    key = layers.key_of("registry-image", spec.tag, pulled.manifest_digest, epoch)
    target = store / f"{key}.tar"
    if target.exists():
        log.from_cache()
    else:
        write_docker_archive(target, spec.tag, pulled.config, pulled.layers, epoch)
        log.built()
    image_id = "sha256:" + hashlib.sha256(pulled.config).hexdigest()
    return Baked(spec, target, image_id, f"{spec.source.ref}@{pulled.manifest_digest}"
                 if not spec.source.ref.digest else str(spec.source.ref))


def image_id_of(archive: Path) -> str:
    """The image id (config digest) a docker-archive tarball carries."""
    try:
        with tarfile.open(archive) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))
    except (OSError, tarfile.TarError, KeyError, ValueError) as e:
        raise BuildError(f"{archive}: not a readable docker-archive ({e}); "
                         "'build.py clean --cache' removes it") from None
    return "sha256:" + manifest[0]["Config"].removesuffix(".json")


def place(baked: list[Baked], root: Path) -> None:
    """Copy the tarballs into the tree, named after the config's image names."""
    folder = root / IMAGES_DIR
    folder.mkdir(parents=True, exist_ok=True)
    for image in baked:
        shutil.copyfile(image.archive, folder / f"{image.spec.name}.tar")


def layer_inputs(baked: list[Baked]) -> list[tuple[str, str, str]]:
    return [(image.spec.name, image.spec.tag, image.image_id) for image in baked]
