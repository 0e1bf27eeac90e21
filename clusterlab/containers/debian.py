"""Container images assembled from Debian packages: the packages (and what they depend on)
unpacked by mmdebstrap into an empty tree, one layer, an entrypoint. Nothing is configured
under emulation, so an image takes seconds; what maintainer scripts would have done for a
service on a full system (users, systemd units) has no use in a container.
"""

import tempfile
from pathlib import Path

from .. import log
from ..base import debian as debian_base
from ..run import run
from . import archive
from .spec import DebianSource, ImageSpec

# dropped while unpacking: documentation, translations, character set converters
DPKG_EXCLUDES = [*debian_base.NO_DOCUMENTATION, "path-exclude=/usr/lib/*/gconv/*"]
# left out of the layer: the container runtime provides /dev; apt's downloads and lists
LEAVE_OUT = ("dev", "var/cache/apt", "var/lib/apt/lists")
MERGED_USR = ("bin", "sbin", "lib", "lib64")
PASSWD = "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
GROUP = "root:x:0:\nnogroup:x:65534:\n"


def mmdebstrap_argv(source: DebianSource, arch: str, suite: str, sources: list[str],
                    apt_cache: Path, output: Path) -> list[str]:
    hooks = ['--setup-hook=mkdir -p "$1/var/cache/apt/archives"',
             f"--setup-hook=sync-in {apt_cache}/ /var/cache/apt/archives/",
             f"--customize-hook=sync-out /var/cache/apt/archives/ {apt_cache}/"]
    return ["mmdebstrap", "--mode=root", "--variant=extract", f"--arch={arch}",
            f"--include={','.join(source.packages)}", "--format=directory",
            *[f"--dpkgopt={o}" for o in DPKG_EXCLUDES], *hooks, suite, str(output), *sources]


def build(spec: ImageSpec, arch: str, suite: str, sources: list[str], apt_cache: Path,
          target: Path, epoch: int) -> str:
    """Write spec's image as a docker-archive tarball at target; return the image id."""
    source = spec.source
    assert isinstance(source, DebianSource)
    apt_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="clusterlab-image-", dir=target.parent) as tmp:
        tree, layer = Path(tmp) / "tree", Path(tmp) / "layer.tar"
        log.info(f"{spec.name}: unpacking {', '.join(source.packages)} from Debian {suite} {arch}")
        run(mmdebstrap_argv(source, arch, suite, sources, apt_cache, tree),
            env={"TMPDIR": tmp, "SOURCE_DATE_EPOCH": str(epoch)})
        _complete(tree)
        diff_id = archive.write_layer(tree, layer, epoch, LEAVE_OUT)
        config = archive.image_config(
            arch, [diff_id], epoch, list(source.entrypoint), list(source.cmd), dict(source.env),
            list(source.ports), source.workdir,
            history=f"Debian {suite} packages: {' '.join(source.packages)}")
        return archive.write_docker_archive(target, spec.tag, config, [layer], epoch)


def _complete(tree: Path) -> None:
    """What a root file system needs that unpacking alone does not make."""
    # merged /usr (bookworm and later): the packages ship only usr/, base-files the links;
    # the dynamic loader is found through /lib
    for name in MERGED_USR:
        if not (tree / name).exists() and (tree / "usr" / name).is_dir():
            (tree / name).symlink_to(f"usr/{name}")
    for name, content in (("passwd", PASSWD), ("group", GROUP)):
        if not (tree / "etc" / name).exists():
            (tree / "etc" / name).write_text(content)
    (tree / "tmp").mkdir(mode=0o1777, exist_ok=True)
    (tree / "tmp").chmod(0o1777)
