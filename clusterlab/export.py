"""Export: compressed image, .sha256, .bmap and .manifest.json, each appearing only when complete."""

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
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


@contextlib.contextmanager
def published_together(finals: tuple[Path, ...]):
    """Yield {final path: where to write it}, in a staging folder beside them. When the block
    succeeds every file is synced to disk, the old files of these names are removed, then the
    new ones renamed into place, the last of finals last: a build never leaves a new image
    beside an old block map or checksum, and the last (the manifest) says the set is whole."""
    folder = finals[0].parent
    staging = folder / f".{finals[0].name}.staging"
    if staging.exists():
        shutil.rmtree(staging)  # an interrupted build's
    staging.mkdir()
    try:
        staged = {final: staging / final.name for final in finals}
        yield staged
        for path in staged.values():
            _sync(path)
        for final in finals:
            final.unlink(missing_ok=True)
        _sync(folder)
        for final, path in staged.items():
            os.rename(path, final)
        _sync(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def compress(image: Path, final: Path, method: str) -> None:
    """Compress with all cores, showing progress over the raw image's bytes. A compressor that
    fails (a full disk) ends the build with its own words, and never outlives it."""
    size = image.stat().st_size
    with written_atomically(final) as partial, open(partial, "wb") as out, \
            tempfile.TemporaryFile() as complaints, \
            log.progress(size, f"{method} {image.name}") as bar:
        proc = subprocess.Popen(FORMATS[method].compress, stdin=subprocess.PIPE, stdout=out,
                                stderr=complaints)
        try:
            with open(image, "rb") as source:
                while chunk := source.read(4 << 20):
                    proc.stdin.write(chunk)
                    bar.update(len(chunk))
            proc.stdin.close()
        except BrokenPipeError:
            # the compressor stopped reading: its exit status and words say why
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
        except BaseException:
            _stopped(proc)
            raise
        try:
            proc.wait()
        except BaseException:  # interrupted while waiting
            _stopped(proc)
            raise
        if proc.returncode != 0:
            complaints.seek(0)
            said = " ".join(complaints.read().decode(errors="replace").split())[-300:]
            raise BuildError(f"{method} failed with exit status {proc.returncode} on {image}: "
                             f"{said or 'no message'}")


def _stopped(proc: subprocess.Popen) -> None:
    """A compressor must not outlive the build."""
    proc.kill()
    proc.wait()


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


def decompressed_head(image: Path, target: Path, size: int) -> int:
    """The first size bytes of the compressed raw image, into target; how many it had (fewer
    when it is shorter, or not what its suffix says)."""
    command = BY_SUFFIX[image.suffix].decompress
    process = subprocess.Popen([*command, str(image)], stdout=subprocess.PIPE,
                               stderr=subprocess.DEVNULL)
    copied = 0
    try:
        with open(target, "wb") as out:
            while copied < size and (chunk := process.stdout.read(min(4 << 20, size - copied))):
                out.write(chunk)
                copied += len(chunk)
    finally:
        process.kill()  # the rest is not wanted
        process.wait()
        process.stdout.close()
    return copied


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
