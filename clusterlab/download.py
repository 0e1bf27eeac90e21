"""Files from the web, verified and kept: streamed to disk with a progress bar, resumed with an
HTTP Range request when the connection drops, retried with back-off, checked against their
sha256 before use and cached under it, so that a second build downloads nothing."""

import hashlib
import re
import time
from pathlib import Path

import requests

from . import log
from .errors import UserError

ATTEMPTS = 6
CHUNK = 1 << 16  # what a dropped connection can cost at most
TIMEOUT = (15, 60)  # seconds to connect, seconds without a byte
SHA256 = re.compile(r"[0-9a-f]{64}")


def fetch(url: str, sha256: str, cache: Path) -> Path:
    """The file at url whose sha256 is given, from the cache when it is there."""
    sha256 = sha256.lower()
    final = cache / f"{sha256}-{_file_name(url)}"
    if final.exists():
        log.info(f"{final.name}: in the download cache")
        return final
    cache.mkdir(parents=True, exist_ok=True)
    partial = final.with_name(final.name + ".partial")
    _download(url, partial)
    if _sha256_of(partial) != sha256:
        partial.unlink()
        raise UserError(f"{url}: the download's sha256 is not {sha256}: the file was deleted; "
                        "check the checksum in the config, or the mirror")
    partial.rename(final)
    return final


def published_sha256(url: str, sha256_url: str) -> str:
    """The checksum a `sha256sum`-style file lists for url's file (or its only checksum)."""
    text = _get_text(sha256_url)
    name = _file_name(url)
    listed = [line.split() for line in text.splitlines() if SHA256.match(line.strip().lower())]
    for fields in listed:
        if len(fields) == 1 or fields[-1].lstrip("*").split("/")[-1] == name:
            return fields[0].lower()
    raise UserError(f"{sha256_url}: lists no sha256 for {name}")


def _file_name(url: str) -> str:
    name = url.split("?")[0].rstrip("/").split("/")[-1]
    if not name:
        raise UserError(f"{url}: expected the address of a file")
    return name


def _get_text(url: str) -> str:
    try:
        response = requests.get(url, timeout=TIMEOUT)
    except requests.RequestException as e:
        raise UserError(f"{url}: cannot fetch it: {e}") from None
    _check_status(url, response)
    return response.text


def _check_status(url: str, response: requests.Response) -> None:
    if response.status_code == 404:
        raise UserError(f"{url}: not found (HTTP 404)")
    if response.status_code >= 400:
        raise UserError(f"{url}: the server answered HTTP {response.status_code}")


def _download(url: str, partial: Path) -> None:
    """Into partial, continuing what an earlier attempt (or an interrupted build) left."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            if _download_once(url, partial):
                return
        except (requests.ConnectionError, requests.Timeout,
                requests.exceptions.ChunkedEncodingError) as e:
            if attempt == ATTEMPTS:
                raise UserError(f"{url}: download failed {ATTEMPTS} times; last: {e}") from None
            wait = min(2 ** attempt, 30)
            log.warn(f"{url}: {e.__class__.__name__}; continuing in {wait} s "
                     f"(attempt {attempt + 1} of {ATTEMPTS})")
            time.sleep(wait)


def _download_once(url: str, partial: Path) -> bool:
    """One request: True once the whole file is in partial."""
    have = partial.stat().st_size if partial.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT) as response:
        if response.status_code == 416 and have:
            return True  # nothing after what we have: complete
        _check_status(url, response)
        if have and response.status_code != 206:
            have = 0  # the server sends the whole file again
        length = int(response.headers.get("Content-Length", 0)) or None
        total = have + length if length else None
        with open(partial, "ab" if have else "wb") as out, \
                log.progress(total, f"download {_file_name(url)}") as bar:
            bar.update(have)
            received = 0
            for chunk in response.iter_content(CHUNK):
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
        if length is not None and received < length:
            raise requests.exceptions.ChunkedEncodingError(
                f"connection closed after {have + received} of {total} bytes")
    return True


def _sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f, log.progress(path.stat().st_size, f"sha256 {path.name}") as bar:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()
