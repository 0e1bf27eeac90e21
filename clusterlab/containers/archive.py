"""Image files: a layer tarball made from a tree, an image config, and the docker-archive
tarball (`docker save` format) that `docker load` and `skopeo … docker-archive:` read.

Everything is written in a fixed order with fixed owners and times, so the same content gives
the same bytes.
"""

import datetime
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

from ..arch import ARCHES
from ..export import written_atomically

PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CHUNK = 1 << 20


def canonical_json(data: dict) -> bytes:
    return json.dumps(data, sort_keys=True, separators=(",", ":")).encode()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def write_layer(tree: Path, target: Path, epoch: int, leave_out: tuple[str, ...] = ()) -> str:
    """The tree as one layer tarball: sorted, owners numeric, times clamped to epoch, hard
    links kept. Entries under leave_out (relative paths) are left out. Returns its diff id."""
    with written_atomically(target) as partial, tarfile.open(partial, "w",
                                                             format=tarfile.GNU_FORMAT) as tar:
        for path in _sorted_walk(tree):
            name = path.relative_to(tree).as_posix()
            if any(name.startswith(prefix + "/") for prefix in leave_out):
                continue
            info = tar.gettarinfo(str(path), arcname=name)
            info.uname = info.gname = ""
            info.mtime = min(int(info.mtime), epoch)
            if info.isreg():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)
    return sha256_file(target)


def _sorted_walk(tree: Path):
    for dirpath, dirnames, filenames in os.walk(tree):
        dirnames.sort()
        here = Path(dirpath)
        for name in sorted(dirnames + filenames):
            yield here / name


def image_config(arch: str, diff_ids: list[str], epoch: int, entrypoint: list[str],
                 cmd: list[str], env: dict[str, str], ports: list[str], workdir: str,
                 history: str) -> bytes:
    """An OCI/Docker image config for a single-platform image."""
    architecture, variant = ARCHES[arch].oci_architecture, ARCHES[arch].oci_variant
    created = datetime.datetime.fromtimestamp(epoch, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ")
    config = {"Env": [f"PATH={PATH}"] + [f"{k}={v}" for k, v in sorted(env.items())],
              "WorkingDir": workdir}
    if entrypoint:
        config["Entrypoint"] = entrypoint
    if cmd:
        config["Cmd"] = cmd
    if ports:
        config["ExposedPorts"] = {port: {} for port in ports}
    document = {"architecture": architecture, "os": "linux", "created": created,
                "config": config, "rootfs": {"type": "layers", "diff_ids": diff_ids},
                "history": [{"created": created, "created_by": history}]}
    if variant:
        document["variant"] = variant
    return canonical_json(document)


def write_docker_archive(target: Path, tag: str, config: bytes, layers: list[Path],
                         epoch: int) -> str:
    """The `docker save` layout: manifest.json, the config named by its digest, one file per
    layer (as given: plain or compressed tarballs, both of which docker load reads). Returns
    the image id (the config's digest)."""
    image_id = "sha256:" + hashlib.sha256(config).hexdigest()
    config_name = image_id.removeprefix("sha256:") + ".json"
    layer_names = [f"{sha256_file(layer).removeprefix('sha256:')}/layer.tar" for layer in layers]
    manifest = json.dumps([{"Config": config_name, "RepoTags": [tag], "Layers": layer_names}])
    with written_atomically(target) as partial, \
            tarfile.open(partial, "w", format=tarfile.GNU_FORMAT) as tar:
        _add_bytes(tar, config_name, config, epoch)
        for name, layer in dict(zip(layer_names, layers)).items():  # a repeated layer once
            _add_dir(tar, name.split("/")[0], epoch)
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = layer.stat().st_size, epoch, 0o644
            with layer.open("rb") as f:
                tar.addfile(info, f)
        _add_bytes(tar, "manifest.json", manifest.encode(), epoch)
    return image_id


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes, epoch: int) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode = len(data), epoch, 0o644
    tar.addfile(info, io.BytesIO(data))


def _add_dir(tar: tarfile.TarFile, name: str, epoch: int) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.mtime, info.mode = tarfile.DIRTYPE, epoch, 0o755
    tar.addfile(info)
