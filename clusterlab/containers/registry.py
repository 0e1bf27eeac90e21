"""A client of the OCI distribution API, enough to pull one platform of an image.

Anonymous access, Bearer tokens (the flow Docker Hub uses) and Basic auth; manifest lists and
OCI indexes resolved to the wanted platform; every manifest and blob checked against its digest;
blobs cached by digest, so pulling again downloads only the (small) manifests of tags.
"""

import dataclasses
import hashlib
import json
import os
import re
import time
from pathlib import Path

import requests
from requests.adapters import HTTPAdapter
from urllib3.util import Retry

from .. import log
from ..arch import ARCHES
from ..errors import BuildError
from .spec import Reference, RegistrySource

INDEX_TYPES = {"application/vnd.oci.image.index.v1+json",
               "application/vnd.docker.distribution.manifest.list.v2+json"}
MANIFEST_TYPES = {"application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json"}
ACCEPT = ", ".join(sorted(INDEX_TYPES | MANIFEST_TYPES))
TIMEOUT = 60
BLOB_ATTEMPTS = 4
CHUNK = 1 << 20


@dataclasses.dataclass(frozen=True)
class Pulled:
    """One platform's image: its config, its layer blobs (as stored, compressed), digests."""
    config: bytes
    layers: list[Path]
    manifest_digest: str


class Registry:
    def __init__(self, source: RegistrySource):
        self.ref = source.ref
        self.base = f"{'http' if source.insecure else 'https'}://{self.ref.api_host}/v2/" \
                    f"{self.ref.repository}"
        self.credentials = _credentials(source)
        self.session = requests.Session()
        retry = Retry(total=4, backoff_factor=1, status_forcelist=[429, 500, 502, 503, 504],
                      allowed_methods=["GET"], raise_on_status=False)
        self.session.mount("http://", HTTPAdapter(max_retries=retry))
        self.session.mount("https://", HTTPAdapter(max_retries=retry))
        self.token: str | None = None

    def get(self, path: str, accept: str | None = None, stream: bool = False) -> requests.Response:
        """GET under the repository's API path; logs in once when the registry asks to."""
        url = f"{self.base}/{path}"
        headers = {"Accept": accept} if accept else {}
        response = self._send(url, headers, stream)
        if response.status_code == 401:
            self._log_in(response.headers.get("WWW-Authenticate", ""))
            response = self._send(url, headers, stream)
        if response.status_code == 401:
            raise BuildError(f"{self.ref}: the registry refused the login (401); check "
                             "username and password_env")
        if response.status_code == 404:
            raise BuildError(f"{self.ref}: not found in the registry (404 for {url})")
        if not response.ok:
            raise BuildError(f"{self.ref}: the registry answered {response.status_code} "
                             f"{response.reason} for {url}")
        return response

    def _send(self, url: str, headers: dict, stream: bool) -> requests.Response:
        if self.token:
            headers = {**headers, "Authorization": f"Bearer {self.token}"}
        auth = self.credentials if not self.token else None
        try:
            return self.session.get(url, headers=headers, stream=stream, timeout=TIMEOUT,
                                    auth=auth)
        except requests.RequestException as e:
            raise BuildError(f"{self.ref}: cannot reach the registry at {url}: {e}") from None

    def _log_in(self, challenge: str) -> None:
        scheme, _, params = challenge.partition(" ")
        fields = dict(re.findall(r'(\w+)="([^"]*)"', params))
        if scheme.lower() == "basic":
            if not self.credentials:
                raise BuildError(f"{self.ref}: the registry needs a login; give username and "
                                 "password_env in the image's config entry")
            return  # the credentials are sent with every request
        if scheme.lower() != "bearer" or "realm" not in fields:
            raise BuildError(f"{self.ref}: unsupported authentication challenge {challenge!r}")
        params = {"scope": fields.get("scope", f"repository:{self.ref.repository}:pull")}
        if "service" in fields:
            params["service"] = fields["service"]
        try:
            answer = self.session.get(fields["realm"], params=params, auth=self.credentials,
                                      timeout=TIMEOUT)
            answer.raise_for_status()
            document = answer.json()
        except (requests.RequestException, ValueError) as e:
            raise BuildError(f"{self.ref}: cannot get a token from {fields['realm']}: {e}") from None
        self.token = document.get("token") or document.get("access_token")
        if not self.token:
            raise BuildError(f"{self.ref}: the token service {fields['realm']} gave no token")


def _credentials(source: RegistrySource) -> tuple[str, str] | None:
    if not source.username:
        return None
    password = os.environ.get(source.password_env or "", "")
    if not password:
        raise BuildError(f"{source.ref}: username is set but the password variable "
                         f"{source.password_env or '(password_env)'} is empty or unset")
    return source.username, password


def pull(source: RegistrySource, arch: str, blobs: Path) -> Pulled:
    """The image for arch, with its layers in the blob cache (downloaded when missing)."""
    registry = Registry(source)
    ref = source.ref
    body, media_type, digest = _manifest(registry, ref.digest or ref.tag)
    if ref.digest and digest != ref.digest:
        raise BuildError(f"{ref}: the registry sent a manifest whose digest is {digest}")
    if media_type in INDEX_TYPES:
        chosen = _platform_manifest(ref, json.loads(body), arch)
        body, media_type, digest = _manifest(registry, chosen)
        if digest != chosen:
            raise BuildError(f"{ref}: manifest {chosen} arrived with digest {digest}")
    if media_type not in MANIFEST_TYPES:
        raise BuildError(f"{ref}: unsupported manifest type {media_type!r}")
    manifest = json.loads(body)
    config = _cached_blob(registry, manifest["config"]["digest"], manifest["config"].get("size"),
                          blobs).read_bytes()
    layers = [_cached_blob(registry, layer["digest"], layer.get("size"), blobs)
              for layer in manifest["layers"]]
    return Pulled(config, layers, digest)


def _manifest(registry: Registry, reference: str) -> tuple[bytes, str, str]:
    response = registry.get(f"manifests/{reference}", accept=ACCEPT)
    body = response.content
    media_type = response.headers.get("Content-Type", "").split(";")[0].strip()
    if media_type not in INDEX_TYPES | MANIFEST_TYPES:  # some registries leave it generic
        media_type = json.loads(body).get("mediaType", media_type)
    return body, media_type, "sha256:" + hashlib.sha256(body).hexdigest()


def _platform_manifest(ref: Reference, index: dict, arch: str) -> str:
    wanted = ARCHES[arch].oci_architecture
    # the architecture's own variant first, then an image that names none
    variants = list(dict.fromkeys([ARCHES[arch].oci_variant, None]))
    offered = [(m.get("platform", {}), m["digest"]) for m in index.get("manifests", [])]
    for variant in variants:
        for platform, digest in offered:
            if (platform.get("os"), platform.get("architecture"), platform.get("variant")) == \
                    ("linux", wanted, variant):
                return digest
    names = sorted({"/".join(filter(None, (p.get("os"), p.get("architecture"), p.get("variant"))))
                    for p, _ in offered})
    raise BuildError(f"{ref}: no image for linux/{wanted} in its index "
                     f"(it has: {', '.join(names) or 'nothing'})")


def _cached_blob(registry: Registry, digest: str, size: int | None, blobs: Path) -> Path:
    """The blob's file in the cache, downloaded (and checked) only when not already there."""
    if not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise BuildError(f"{registry.ref}: unsupported blob digest {digest!r}")
    target = blobs / digest.replace(":", "/")
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    for attempt in range(1, BLOB_ATTEMPTS + 1):
        try:
            _download(registry, digest, size, partial)
            break
        except (requests.RequestException, ConnectionError) as e:
            if attempt == BLOB_ATTEMPTS:
                partial.unlink(missing_ok=True)
                raise BuildError(f"{registry.ref}: downloading blob {digest} failed "
                                 f"{BLOB_ATTEMPTS} times: {e}") from None
            log.warn(f"blob {digest[:19]}…: {e}; retrying")
            time.sleep(2 ** attempt)
    os.rename(partial, target)
    return target


def _download(registry: Registry, digest: str, size: int | None, partial: Path) -> None:
    hasher = hashlib.sha256()
    with registry.get(f"blobs/{digest}", stream=True) as response, partial.open("wb") as out, \
            log.progress(size, f"layer {digest[7:19]}") as bar:
        for chunk in response.iter_content(CHUNK):
            out.write(chunk)
            hasher.update(chunk)
            bar.update(len(chunk))
    if "sha256:" + hasher.hexdigest() != digest:
        partial.unlink()
        raise BuildError(f"{registry.ref}: blob {digest} does not match its digest "
                         f"(got sha256:{hasher.hexdigest()}); refused")
