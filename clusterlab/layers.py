"""Build results cached as overlayfs layers, each keyed by everything that went into it.

A layer is a folder `<cache>/layers/<key>/` whose `upper/` holds what one step changed in the
tree (overlayfs whiteouts mark deletions). A step runs on an overlay of the layers below it, so a
rebuild re-runs only the steps whose inputs changed and reads the rest from the cache. A layer is
built under `<key>.partial/` and renamed when complete: an interrupted build never leaves a layer
that a later one could use.
"""

import contextlib
import hashlib
import json
import os
import time
from pathlib import Path
from typing import Any

from . import mounts

UNUSED_DAYS = 14  # layers no build has used for this long are removed


def key_of(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


BYTECODE = "__pycache__"


def digest_files(paths: list[Path], root: Path | None = None) -> str:
    """Hash of files or folders: relative names, modes, contents and link targets. Python
    bytecode that running the code left beside it is no input."""
    digest = hashlib.sha256()
    for top in paths:
        entries = sorted(top.rglob("*")) if top.is_dir() else [top]
        for path in entries:
            if BYTECODE in path.parts:
                continue
            st = path.lstat()
            name = str(path.relative_to(root or top.parent))
            digest.update(f"{name}\0{st.st_mode:o}\0".encode())
            if path.is_symlink():
                digest.update(os.readlink(path).encode())
            elif path.is_file():
                digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


class LayerCache:
    def __init__(self, cache_dir: Path):
        self.root = cache_dir / "layers"

    def path(self, key: str) -> Path:
        return self.root / key

    def has(self, key: str) -> bool:
        return (self.path(key) / "upper").is_dir()

    def mark_used(self, key: str) -> None:
        os.utime(self.path(key))

    @contextlib.contextmanager
    def building(self, key: str):
        """A fresh partial layer folder; it becomes the layer only if the block succeeds."""
        partial = self.root / f"{key}.partial"
        self.discard(partial)
        (partial / "upper").mkdir(parents=True)
        (partial / "work").mkdir()
        yield partial
        mounts.remove_tree(partial / "work")
        os.rename(partial, self.path(key))

    def discard(self, folder: Path) -> None:
        if folder.exists():
            mounts.remove_tree(folder)

    def remove_leftovers(self, keep: set[str]) -> None:
        """Partial layers of interrupted builds, and layers unused for UNUSED_DAYS."""
        if not self.root.exists():
            return
        now = time.time()
        for folder in self.root.iterdir():
            stale = now - folder.stat().st_mtime > UNUSED_DAYS * 86400
            if folder.name.endswith(".partial") or (stale and folder.name not in keep):
                self.discard(folder)


@contextlib.contextmanager
def overlay(lowers: list[Path], upper_layer: Path | None = None):
    """The merged tree of layers (bottom first), writable into upper_layer when given."""
    upper_dirs = [p / "upper" for p in reversed(lowers)]
    if upper_layer is None:
        options = "ro,lowerdir=" + ":".join(map(str, upper_dirs))
    else:
        options = (f"lowerdir={':'.join(map(str, upper_dirs))},"
                   f"upperdir={upper_layer / 'upper'},workdir={upper_layer / 'work'}")
    with mounts.on_temporary_folder(["mount", "-t", "overlay", "overlay", "-o", options],
                                    "clusterlab-root-") as mountpoint:
        yield mountpoint
