"""Export: compressed image, .sha256, .bmap and .manifest.json, each appearing only when complete."""

import contextlib
import hashlib
import json
import os
import subprocess
from pathlib import Path

from . import log
from .compression import BY_SUFFIX, FORMATS
from .errors import BuildError
from .run import run



@contextlib.contextmanager
def written_atomically(final: Path):
    """Yield a temporary path next to final; rename it to final only if the block succeeds."""
    partial = final.with_name(f".{final.name}.partial")
    try:
        yield partial
        os.rename(partial, final)
    finally:
        partial.unlink(missing_ok=True)


def compress(image: Path, final: Path, method: str) -> None:
    """Compress with all cores, showing progress over the raw image's bytes."""
    size = image.stat().st_size
    with written_atomically(final) as partial, open(partial, "wb") as out, \
            log.progress(size, f"{method} {image.name}") as bar:
        proc = subprocess.Popen(FORMATS[method].compress, stdin=subprocess.PIPE, stdout=out)
        with open(image, "rb") as source:
            while chunk := source.read(4 << 20):
                proc.stdin.write(chunk)
                bar.update(len(chunk))
        proc.stdin.close()
        if proc.wait() != 0:
            raise BuildError(f"{method} failed with exit status {proc.returncode} on {image}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def write_sha256(path: Path, target: Path) -> str:
    """A sha256sum-format file for path, checkable with `sha256sum -c`; returns the digest."""
    digest = sha256_of(path)
    with written_atomically(target) as partial:
        partial.write_text(f"{digest}  {path.name}\n")
    return digest


def write_bmap(image: Path, target: Path) -> None:
    with written_atomically(target) as partial:
        run(["bmaptool", "create", "-o", str(partial), str(image)])


def installed_packages(tree: Path) -> list[dict[str, str]]:
    out = run(["dpkg-query", f"--admindir={tree}/var/lib/dpkg", "-W",
               "-f", "${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n"], capture=True)
    packages = []
    for line in out.splitlines():
        status, name, version, arch = line.split("\t")
        if status.startswith("ii"):
            packages.append({"name": name, "version": version, "architecture": arch})
    return packages


def write_manifest(target: Path, manifest: dict) -> None:
    with written_atomically(target) as partial:
        partial.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


@contextlib.contextmanager
def decompressed(image: Path):
    """The raw image as a stream, decompressed on the fly by its suffix's decompressor."""
    compressed = BY_SUFFIX.get(image.suffix)
    if compressed is None:
        with open(image, "rb") as stream:
            yield stream
        return
    command = compressed.decompress
    process = subprocess.Popen([*command, str(image)], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        yield process.stdout
        process.stdout.close()
        if process.wait() != 0:
            raise BuildError(f"{image}: {command[0]} cannot decompress it: "
                             f"{process.stderr.read().decode(errors='replace').strip()[-300:]}")
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
