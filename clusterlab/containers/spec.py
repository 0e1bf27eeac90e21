"""What a container image in the config is: the tag it carries on the node and where it comes
from (a registry reference, or Debian packages). Parsed and validated here, for the config."""

import dataclasses
import re
from typing import Any

from clusterlab_node.settings import IMAGE_TAG, TAG

COMPONENT = r"[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*"
DIGEST = r"sha256:[0-9a-f]{64}"
DOCKER_HUB = "docker.io"
PORT = r"([1-9]\d{0,3}|[1-5]\d{4}|6[0-4]\d{3}|65[0-4]\d\d|655[0-2]\d|6553[0-5])/(tcp|udp)"  # 1-65535
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"


class SpecError(ValueError):
    """A field of an image entry is wrong: which field, and what was expected."""

    def __init__(self, field: str, expected: str, got: Any):
        super().__init__(f"{field}: expected {expected}")
        self.field, self.expected, self.got = field, expected, got


@dataclasses.dataclass(frozen=True)
class Reference:
    """An image in a registry: registry host, repository, tag and/or digest."""
    registry: str  # as written, e.g. docker.io or 127.0.0.1:5000
    repository: str  # e.g. library/consul
    tag: str | None
    digest: str | None

    @property
    def api_host(self) -> str:
        return "registry-1.docker.io" if self.registry == DOCKER_HUB else self.registry

    def __str__(self) -> str:
        return (f"{self.registry}/{self.repository}" + (f":{self.tag}" if self.tag else "")
                + (f"@{self.digest}" if self.digest else ""))


@dataclasses.dataclass(frozen=True)
class RegistrySource:
    ref: Reference
    insecure: bool  # plain HTTP
    username: str | None
    password_env: str | None  # the environment variable holding the password


@dataclasses.dataclass(frozen=True)
class DebianSource:
    suite: str | None  # None: the image's own suite
    packages: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    ports: tuple[str, ...]
    env: tuple[tuple[str, str], ...]
    workdir: str


@dataclasses.dataclass(frozen=True)
class ImageSpec:
    name: str  # the config's name for it, also the tarball's name on the node
    tag: str  # name:tag on the node
    source: RegistrySource | DebianSource


def parse_reference(text: Any, field: str = "ref") -> Reference:
    """Docker's reference syntax: [registry/]repository(:tag|@digest|:tag@digest). Unlike
    docker, a reference without tag or digest is refused: 'latest' is not reproducible."""
    expected = ("a registry reference with a tag or digest, e.g. docker.io/hashicorp/consul:1.20 "
                "or 127.0.0.1:5000/lab/web@sha256:…")
    if not isinstance(text, str):
        raise SpecError(field, expected, text)
    rest, _, digest = text.partition("@")
    if digest and not re.fullmatch(DIGEST, digest):
        raise SpecError(field, expected + " (a digest is sha256: and 64 hex digits)", text)
    slash_parts = rest.split("/")
    last = slash_parts[-1]
    name_end, colon, tag = last.partition(":")
    if not colon and not digest:
        raise SpecError(field, expected + " (this one has neither)", text)
    first = slash_parts[0]
    has_registry = len(slash_parts) > 1 and ("." in first or ":" in first or first == "localhost")
    registry = first if has_registry else DOCKER_HUB
    path = slash_parts[1 if has_registry else 0:-1] + [name_end]
    if registry == DOCKER_HUB and len(path) == 1:
        path = ["library"] + path
    if not all(re.fullmatch(COMPONENT, part) for part in path) or (
            colon and not re.fullmatch(TAG, tag)):
        raise SpecError(field, expected, text)
    return Reference(registry, "/".join(path), tag or None, digest or None)


def parse(name: str, entry: Any) -> ImageSpec:
    if not isinstance(entry, dict):
        raise SpecError(name, "a mapping with tag, source and the source's fields", entry)
    tag = entry.get("tag")
    if not isinstance(tag, str) or not re.fullmatch(IMAGE_TAG, tag):
        raise SpecError(f"{name}.tag", "the name:tag the image carries on the node, e.g. "
                        "clusterlab/consul:1.8.7 (a tag is required)", tag)
    source = entry.get("source")
    fields = {"registry": _registry_source, "debian": _debian_source}
    if not isinstance(source, str) or source not in fields:
        raise SpecError(f"{name}.source", "one of debian, registry", source)
    return ImageSpec(name, tag, fields[source](name, entry))


def _only(name: str, entry: dict, allowed: set[str]) -> None:
    unknown = [field for field in entry if field not in allowed | {"tag", "source"}]
    if unknown:
        first = min(unknown, key=str)
        raise SpecError(f"{name}.{first}", "one of the fields " + ", ".join(
            sorted(allowed | {"tag", "source"})), entry[first])


def _registry_source(name: str, entry: dict) -> RegistrySource:
    _only(name, entry, {"ref", "insecure", "username", "password_env"})
    insecure = entry.get("insecure", False)
    if not isinstance(insecure, bool):
        raise SpecError(f"{name}.insecure", "true or false", insecure)
    username, password_env = entry.get("username"), entry.get("password_env")
    if username is not None and not isinstance(username, str):
        raise SpecError(f"{name}.username", "a user name", username)
    if password_env is not None and not (isinstance(password_env, str)
                                         and re.fullmatch(ENV_NAME, password_env)):
        raise SpecError(f"{name}.password_env", "the name of an environment variable", password_env)
    return RegistrySource(parse_reference(entry.get("ref"), f"{name}.ref"), insecure, username,
                          password_env)


def _debian_source(name: str, entry: dict) -> DebianSource:
    _only(name, entry, {"suite", "packages", "entrypoint", "cmd", "ports", "env", "workdir"})
    suite = entry.get("suite")
    if suite is not None and not (isinstance(suite, str) and re.fullmatch(r"[a-z]+", suite)):
        raise SpecError(f"{name}.suite", "a Debian suite name such as bullseye", suite)
    packages = _strings(name, entry, "packages", r"[a-z0-9][a-z0-9+.-]+", "Debian package names")
    if not packages:
        raise SpecError(f"{name}.packages", "at least one Debian package name", packages)
    env = entry.get("env", {})
    if not isinstance(env, dict) or not all(
            isinstance(k, str) and re.fullmatch(ENV_NAME, k) and isinstance(v, (str, int))
            for k, v in env.items()):
        raise SpecError(f"{name}.env", "a mapping of variable names to values", env)
    workdir = entry.get("workdir", "/")
    if not isinstance(workdir, str) or not workdir.startswith("/"):
        raise SpecError(f"{name}.workdir", "an absolute path", workdir)
    return DebianSource(suite, packages, _strings(name, entry, "entrypoint", r".+", "strings"),
                        _strings(name, entry, "cmd", r".*", "strings"),
                        _strings(name, entry, "ports", PORT, "ports such as 8500/tcp"),
                        tuple(sorted((k, str(v)) for k, v in env.items())), workdir)


def _strings(name: str, entry: dict, field: str, pattern: str, what: str) -> tuple[str, ...]:
    value = entry.get(field, [])
    if not isinstance(value, list) or not all(isinstance(v, str) and re.fullmatch(pattern, v)
                                              for v in value):
        raise SpecError(f"{name}.{field}", f"a list of {what}", value)
    return tuple(value)
