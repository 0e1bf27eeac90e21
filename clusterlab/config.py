"""Every build setting, declared once: type, default, doc; loaded from YAML and --set, validated.

The default config file `clusterlab.yaml` is generated from SETTINGS (`build.py config
--defaults`), so the defaults and their documentation live only here.
"""

import dataclasses
import difflib
import itertools
import re
import textwrap
from pathlib import Path
from typing import Any, Callable

import yaml
from clusterlab_node import settings as cluster_schema

from .arch import ARCHES, BOARD_ARCHES
from .base.presets import PRESETS
from .compression import WRITTEN, image_names
from .containers.spec import SpecError, parse as parse_image_spec
from . import yamlfile
from .errors import UserError, plain, shown

Check = Callable[[Any], str | None]  # returns what was expected when the value is bad


@dataclasses.dataclass(frozen=True)
class Setting:
    key: str  # dotted path, e.g. "image.compression"
    default: Any
    doc: str
    check: Check
    # a mapping whose entries each file (or --set key.entry=…) adds to or replaces one by one;
    # an entry set to null is removed
    merge: bool = False


def _is(kind: type, name: str) -> Check:
    # bool is an int in Python; a YAML "yes" must not pass as a number
    def check(value):
        ok = isinstance(value, kind) and not (kind is int and isinstance(value, bool))
        return None if ok else name
    return check


def _one_of(*choices: str) -> Check:
    return lambda value: None if value in choices else "one of " + ", ".join(choices)


def _matches(pattern: str, name: str) -> Check:
    return lambda value: (None if isinstance(value, str) and re.fullmatch(pattern, value)
                          else name)


def _empty_or(check: Check) -> Check:
    def checked(value):
        expected = None if value == "" else check(value)
        return expected and f"{expected}, or empty"
    return checked


def _int_between(low: int, high: int) -> Check:
    def check(value):
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            return f"an integer from {low} to {high}"
        return None
    return check


# text with no control character; ~ only for one's own home (not ~user)
FOLDER = r"(?!~[^/])[^\x00-\x1f]*[^\x00-\x1f\s][^\x00-\x1f]*"
# URLs are printable ASCII (a URL's own characters); http(s) names a host
HTTP_URL = r"https?://[!-.0-~][!-~]*"
FILE_URL = r"file:///[!-~]*"
USERNAME = r"[a-z_][a-z0-9_-]{0,31}"
SSH_KEY = r"(ssh-(ed25519|rsa|dss)|ecdsa-sha2-nistp\d+|sk-(ssh-ed25519|ecdsa-sha2-nistp256)@openssh\.com) [A-Za-z0-9+/=]+( .*)?"


def _check_users(value) -> str | None:
    expected = ("a list of users, each {name: …, groups: [..], ssh_keys: ['ssh-ed25519 AAAA… "
                "comment']} with a valid user name, group names and OpenSSH public keys")
    if not isinstance(value, list):
        return expected
    for user in value:
        if not isinstance(user, dict) or set(user) - {"name", "groups", "ssh_keys"}:
            return expected
        if not re.fullmatch(USERNAME, str(user.get("name", ""))):
            return expected
        groups, keys = user.get("groups", []), user.get("ssh_keys", [])
        if not isinstance(groups, list) or not all(
                isinstance(g, str) and re.fullmatch(USERNAME, g) for g in groups):
            return expected
        if not isinstance(keys, list) or not all(
                isinstance(k, str) and re.fullmatch(SSH_KEY, k.strip()) for k in keys):
            return expected
    return None


def _check_containers(value) -> str | None:
    """Raises SpecError naming the entry's field when one is wrong."""
    if not isinstance(value, dict):
        return "a mapping of image names to image entries"
    tags = {}
    for name, entry in value.items():
        if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9][a-z0-9_-]*", name):
            return "image names made of lower-case letters, digits, '-' and '_'"
        tag = parse_image_spec(name, entry).tag
        if tag in tags:  # docker load would keep only one of them
            raise SpecError(f"{name}.tag", f"a tag of its own (the image {tags[tag]} has it)", tag)
        tags[tag] = name
    return None


DEFAULT_CONTAINERS = {
    "consul": {
        "tag": "clusterlab/consul:1.8.7", "source": "debian",
        # the last Debian suite with consul; its binary serves the web UI itself
        "suite": "bullseye", "packages": ["consul", "ca-certificates"],
        "entrypoint": ["/usr/bin/consul"], "cmd": ["agent", "-dev", "-ui", "-client", "0.0.0.0"],
        "ports": ["8300/tcp", "8301/tcp", "8301/udp", "8302/tcp", "8302/udp", "8500/tcp",
                  "8600/tcp", "8600/udp"]},
    "haproxy": {
        "tag": "clusterlab/haproxy:trixie", "source": "debian", "packages": ["haproxy"],
        "entrypoint": ["/usr/sbin/haproxy", "-W", "-db"], "cmd": ["-f", "/etc/haproxy/haproxy.cfg"],
        "ports": ["80/tcp"]},
    "web": {
        "tag": "clusterlab/web:1", "source": "debian", "packages": ["busybox"],
        # answers every request with its container's host name
        "entrypoint": ["/usr/bin/busybox", "sh", "-c",
                       "busybox mkdir -p /srv/www && busybox hostname > /srv/www/index.html "
                       "&& exec busybox httpd -f -p 80 -h /srv/www"],
        "ports": ["80/tcp"]},
}

SETTINGS: list[Setting] = [
    Setting("arch", "arm64",
            "Target architecture: " + " or ".join(f"{name} ({ARCHES[name].boards})"
                                                  for name in BOARD_ARCHES) + ".",
            _one_of(*BOARD_ARCHES)),
    Setting("base.suite", "trixie", "Debian suite the image is built from.",
            _matches(r"[a-z]+", "a Debian suite name such as trixie")),
    Setting("base.mirror", "http://deb.debian.org/debian",
            "Debian mirror used to build the image and written into its apt sources.",
            _matches(f"{HTTP_URL}|{FILE_URL}", "an http(s):// or file:// URL")),
    Setting("base.updates", True,
            "Include the <suite>-updates suite (fixes published between point releases).",
            _is(bool, "true or false")),
    Setting("base.security_mirror", "http://deb.debian.org/debian-security",
            "Mirror of Debian security updates, written into the image's apt sources; empty to "
            "leave them out.",
            _matches(f"({HTTP_URL}|{FILE_URL})?", "an http(s):// or file:// URL, or empty")),
    Setting("base.source", "debian",
            "Where the base comes from: debian (made from the Debian archive with mmdebstrap) "
            "or download (a vendor image: base.preset, or base.url with base.sha256 or "
            "base.sha256_url; packages then come from the image's own apt sources).",
            _one_of("debian", "download")),
    Setting("base.preset", "",
            "A known vendor image for base.source download, instead of url and checksum: "
            + ", ".join(PRESETS) + " (see README).",
            _one_of("", *PRESETS)),
    Setting("base.url", "",
            f"Address of the base image for base.source download: {image_names()}, or a .zip "
            "holding one .img.",
            _matches(f"({HTTP_URL})?", "an http:// or https:// URL, or empty")),
    Setting("base.sha256", "", "sha256 of the file at base.url.",
            _matches(r"([0-9a-f]{64})?", "64 lower-case hex digits, or empty")),
    Setting("base.sha256_url", "",
            "Address of a sha256sum-style file that lists base.url's checksum (used when "
            "base.sha256 is empty).",
            _matches(f"({HTTP_URL})?", "an http:// or https:// URL, or empty")),
    Setting("base.boot_mount", "/boot/firmware",
            "Where the downloaded image mounts its boot (FAT) partition: /boot/firmware "
            "(Debian, Raspberry Pi OS since bookworm) or /boot (HypriotOS, older Raspberry Pi OS).",
            _one_of("/boot/firmware", "/boot")),
    Setting("hostname", "clusterlab",
            "Default host name; each card can set its own in meta-data on the boot partition.",
            # the rule of the card's default_hostname, which it becomes
            cluster_schema.BY_KEY["default_hostname"].problem),
    Setting("locale", "en_US.UTF-8", "System locale (generated in the image).",
            _matches(r"[A-Za-z_]+\.UTF-8", "a UTF-8 locale such as en_US.UTF-8")),
    Setting("timezone", "Etc/UTC", "Time zone, a name from the tz database.",
            _matches(r"[A-Za-z_+-]+(/[A-Za-z0-9_+-]+)*", "a tz database name such as Europe/Berlin")),
    Setting("users", [],
            "Login users created on first boot by cloud-init: name, groups, ssh_keys. No user "
            "has a password; with none listed the image can only be entered after adding a user "
            "or key to user-data on the card. Example: [{name: pi, groups: [sudo, docker], "
            "ssh_keys: ['ssh-ed25519 AAAA… me@laptop']}]",
            _check_users),
    # the cluster section is the node agent's own schema (see cluster.py for the card)
    *[Setting(f"cluster.{field.key}", field.default, field.doc, field.problem)
      for field in cluster_schema.FIELDS if field.in_build],
    Setting("cluster.gossip_key", "",
            "Key (base64 of 32 bytes) encrypting Consul's gossip. Empty: one derived from the "
            "image version, the same on every card of a build and known to whoever has the image "
            "or knows its version; set your own ('head -c32 /dev/urandom | base64') for a key "
            "only your cards hold.",
            _empty_or(cluster_schema.BY_KEY["gossip_key"].problem)),
    Setting("image.compression", "xz",
            "Compression of the exported image: " + " or ".join(WRITTEN) + ".",
            _one_of(*WRITTEN)),
    Setting("image.root_headroom_mib", 768,
            "Free space (MiB) left in the root file system of the image, beyond its content; "
            "the root grows to fill the card on first boot.",
            _int_between(64, 65536)),
    Setting("image.boot_headroom_mib", 96,
            "Free space (MiB) left in the FAT boot partition, beyond its content (room for a "
            "kernel update).",
            _int_between(16, 4096)),
    Setting("image.output_dir", "images",
            "Folder where finished images are written (relative to the checkout, or absolute); "
            "`build.py clean` removes it only if the build made it.",
            _matches(FOLDER, "a folder path")),
    Setting("containers", DEFAULT_CONTAINERS,
            "Container images baked into the image and loaded into Docker on first boot, by "
            "name. Each has the tag it carries on the node and a source: 'debian' (assembled "
            "from Debian packages: suite (default base.suite), packages, entrypoint, cmd, "
            "ports, env, workdir) or 'registry' (ref: a reference with a tag or digest, "
            "insecure: true for plain HTTP, username and password_env for a registry that "
            "needs a login). Entries add to or replace these defaults one by one; null removes "
            "one. Example: consul: {tag: 'clusterlab/consul:1.8.7', source: registry, ref: "
            "'docker.io/hashicorp/consul:1.20'}",
            _check_containers, merge=True),
    Setting("cache_dir", "~/.cache/clusterlab",
            "Folder for downloaded packages and intermediate build results; `build.py clean "
            "--cache` removes it only if the build made it.",
            _matches(FOLDER, "a folder path")),
]

BY_KEY = {s.key: s for s in SETTINGS}


class Config:
    """The effective, validated settings of one build."""

    def __init__(self, values: dict[str, Any], sources: list[str], origins: dict[str, str]):
        self._values = values
        self.sources = sources
        self._origins = origins  # key -> the file (or "--set") that gave its value, in order

    def __getitem__(self, key: str) -> Any:
        return self._values[key]

    def last_source(self, keys: list[str]) -> str:
        """Of the files and --set options that gave these settings, the one applied last: where
        a combination of settings went wrong."""
        return next(source for key, source in reversed(self._origins.items()) if key in keys)

    def nested(self) -> dict[str, Any]:
        """Settings as nested mappings: for templates (`config.image.compression`) and output."""
        tree: dict[str, Any] = {}
        for key, value in self._values.items():
            *parents, leaf = key.split(".")
            node = tree
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = value
        return tree

    @property
    def cache_dir(self) -> Path:
        return Path(self["cache_dir"]).expanduser()


def load(files: list[Path], overrides: list[str]) -> Config:
    """Defaults, then each file in order, then each --set key=value; every value validated."""
    values = {s.key: s.default for s in SETTINGS}
    origins = {key: "the defaults" for key in values}
    given = itertools.chain(  # read one by one: the first mistake is the one reported
        ((str(path), item) for path in files for item in _read_file(path).items()),
        (("--set", _parse_override(item)) for item in overrides))
    for source, (key, value) in given:
        values[key] = _validated(source, key, _merged(key, values[key], value))
        origins.pop(key)
        origins[key] = source
    return Config(values, [str(p) for p in files] + [f"--set {o}" for o in overrides], origins)


def _read_file(path: Path) -> dict[str, Any]:
    try:
        document = yamlfile.load(path.read_bytes(), str(path))
    except OSError as e:
        raise UserError(f"{path}: cannot read config file: {e.strerror}") from None
    if document is None:
        return {}
    if not isinstance(document, dict):
        raise UserError(f"{path}: expected a mapping of settings, got {describe(document)}")
    return _flatten(str(path), document)


def _flatten(source: str, mapping: dict, prefix: str = "") -> dict[str, Any]:
    """Turn nested mappings into dotted keys, stopping at declared settings."""
    flat = {}
    for name, value in mapping.items():
        key = f"{prefix}{name}"
        if key in BY_KEY:
            flat[key] = value
        elif isinstance(value, dict) and any(k.startswith(key + ".") for k in BY_KEY):
            flat.update(_flatten(source, value, key + "."))
        else:
            raise UserError(_unknown_key_message(source, key))
    return flat


def _merged(key: str, old: Any, new: Any) -> Any:
    if not BY_KEY[key].merge or not isinstance(new, dict) or not isinstance(old, dict):
        return new
    merged = {**old, **new}
    return {name: entry for name, entry in merged.items() if entry is not None}


def _parse_override(item: str) -> tuple[str, Any]:
    """key=value, the value read as YAML; for a merged mapping also key.entry=value."""
    key, sep, text = item.partition("=")
    if not sep or not key:
        raise UserError(f"--set {plain(item)}: expected key=value, e.g. --set "
                        "image.compression=zstd")
    if text.lstrip().startswith(("[", "{")):  # meant as a list or mapping: it must be one
        value = yamlfile.load(text, f"--set {plain(key)}")
    else:
        try:
            value = yamlfile.load(text, f"--set {plain(key)}") if text else ""
        except UserError:
            value = text  # plain text that YAML cannot read, e.g. a: b
    if key in BY_KEY and isinstance(BY_KEY[key].default, str) and not isinstance(value, str) \
            and not text.startswith(("[", "{")):
        value = text  # a text setting keeps what was typed: a checksum of digits stays text
    parent, _, entry = key.rpartition(".")
    if key not in BY_KEY and parent in BY_KEY and BY_KEY[parent].merge:
        return parent, {entry: value}
    if key not in BY_KEY:
        raise UserError(_unknown_key_message("--set", key))
    return key, value


def _validated(source: str, key: str, value: Any) -> Any:
    try:
        expected = BY_KEY[key].check(value)
    except SpecError as e:
        raise UserError(f"{source}: {key}.{e.field}: expected {e.expected}, "
                        f"got {describe(e.got)}") from None
    if expected:
        raise UserError(f"{source}: {key}: expected {expected}, got {describe(value)}")
    return value


def _unknown_key_message(source: str, key: str) -> str:
    close = difflib.get_close_matches(key, BY_KEY, n=1) if len(key) < 100 else []
    hint = f" (did you mean {close[0]}?)" if close else ""
    return (f"{source}: {plain(key)}: unknown setting{hint}; 'build.py config --defaults' lists "
            "them all")


def describe(value: Any) -> str:
    kind = {bool: "boolean", int: "integer", float: "number", str: "string", list: "list",
            dict: "mapping", type(None): "nothing"}.get(type(value), type(value).__name__)
    return f"{kind} {shown(value)}"


def documented_defaults() -> str:
    """The default config file, every setting with its doc: the content of clusterlab.yaml."""
    lines = ["# ClusterLab build settings with their defaults.",
             "# Generated by 'python3 build.py config --defaults'; override them in your own file",
             "# (make image CONFIG=my.yaml, build.py build -c my.yaml) or with --set key=value.",
             ""]
    previous: list[str] = []
    for setting in SETTINGS:
        *parents, leaf = setting.key.split(".")
        for depth, part in enumerate(parents):
            if previous[:depth + 1] != parents[:depth + 1]:
                lines.append(f"{'  ' * depth}{part}:")
        previous = parents
        indent = "  " * len(parents)
        lines += [f"{indent}# {line}" for line in textwrap.wrap(setting.doc, 96 - len(indent))]
        if isinstance(setting.default, dict) and setting.default:
            block = yaml.safe_dump({leaf: setting.default}, sort_keys=False, width=96)
            lines += [indent + line for line in block.splitlines()] + [""]
        else:
            flow = yaml.safe_dump({leaf: setting.default}, default_flow_style=True,
                                  sort_keys=False)
            lines += [f"{indent}{flow.strip()[1:-1]}", ""]
    return "\n".join(lines)
