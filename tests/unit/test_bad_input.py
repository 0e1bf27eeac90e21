"""Malformed input fed to the real command line, one subprocess per input: every one is refused
with exit status 2 and one line on stderr, `error: ` and the file or argument and what was wrong,
no traceback, and nothing changed outside the test's scratch folder.

Categories (one test function each, a table of cases each):
  config files        build.py config -c FILE      (and a few through build.py stages -c FILE)
  --set values        build.py config --set KEY=VALUE
  flash arguments     build.py flash IMAGE --device FILE --yes [--hostname/--ssh-key/--user/…]
  command line        what argparse refuses (no verb, unknown option, missing value, …)
  files beside image  the .bmap and .sha256 that flash reads next to the image
  boot arguments      build.py boot IMAGE
  clean               build.py clean [--cache] --set image.output_dir=…/cache_dir=…
A few well-formed inputs at the end are accepted: the ones the cases spoil, so a case that
fails says something about the builder, not about its fixture.

Safety: every command runs with HOME set to a scratch folder (so `~` and the default cache_dir are
scratch), with its cwd in the scratch folder and an address-space limit (alias bombs fail fast
instead of eating the machine's memory). `clean` runs only in a scratch copy of the checkout's
code, so that output folders relative to the checkout (empty, `.`, `..`) resolve inside scratch;
the few cases aimed at real precious folders (`/`, `/root`, `~`) first ask `build.py config` with
the same settings and run `clean` only if the config is refused there, which it must be.
"""

import dataclasses
import hashlib
import os
import random
import resource
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest
from clusterlab import cluster
from clusterlab_node import settings

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60
MEMORY_LIMIT = 1 << 30  # address space of each command: a bomb's expansion ends in MemoryError
SENTINELS = [ROOT / "build.py", ROOT / "VERSION", ROOT / "pyproject.toml"]  # mtimes kept
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq7 me@laptop"
PRIVATE_KEY = ("-----BEGIN OPENSSH PRIVATE KEY-----\n"
               "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
               "-----END OPENSSH PRIVATE KEY-----\n")
DEEP = 5000  # nesting depth, far beyond Python's recursion limit
HUGE_INT = "1" + "0" * 5000  # more digits than Python converts by default (4300)
WEB = "{tag: 'clusterlab/web:1', source: debian, packages: [busybox]"  # a containers entry, open


def garbage(size: int = 4096, seed: int = 1234) -> bytes:
    """Random bytes with NULs in them, the same on every run."""
    return b"\0\xff\xfe" + random.Random(seed).randbytes(size)


def bomb(levels: int, fan: int) -> str:
    """A flow list whose anchors refer to each other: fan**levels leaves once expanded."""
    chain = [f"&a0 [{', '.join(['lol'] * fan)}]"]
    chain += [f"&a{i} [{', '.join([f'*a{i - 1}'] * fan)}]" for i in range(1, levels)]
    return f"[{', '.join(chain)}]"


def nested(key: str, value: str) -> str:
    """key (dotted) as nested YAML mappings, with value as the innermost value."""
    *parents, leaf = key.split(".")
    lines = [f"{'  ' * depth}{part}:" for depth, part in enumerate(parents)]
    return "\n".join(lines + [f"{'  ' * len(parents)}{leaf}: {value}"]) + "\n"


# the scratch folder of one test

@dataclasses.dataclass
class Scratch:
    root: Path
    image_files: dict  # name -> bytes of the module's small real image (x.img, x.img.xz)
    watched: list = dataclasses.field(default_factory=list)  # folders whose entries must stay
    sentinels: list = dataclasses.field(default_factory=list)  # files that must survive

    def __post_init__(self):
        for name in ("cwd", "home", "in"):
            (self.root / name).mkdir()
            self.keep(self.root / name / "sentinel")

    @property
    def cwd(self) -> Path:
        return self.root / "cwd"

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def target(self) -> Path:
        return self.root / "card.img"

    def keep(self, path: Path, text: str = "must survive\n") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.sentinels.append(path)
        return path

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.root / "in" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            content = content.encode()
        path.write_bytes(content)
        return path

    def mkdir(self, name: str) -> Path:
        path = self.root / "in" / name
        path.mkdir(parents=True)
        return path

    def image(self, name: str = "x.img") -> Path:
        """A fresh copy of the small real image (name ending .img or .img.xz)."""
        return self.write(name, self.image_files[".xz" if name.endswith(".xz") else ".img"])

    def flash(self, *extra, image: Path | None = None) -> list:
        return ["flash", image or self.image(), "--device", self.target, "--yes", *extra]

    @property
    def checkout(self) -> Path:
        """A scratch copy of the checkout's code (clean resolves output_dir against it), in a
        folder `outer` that holds a sentinel: made on first use."""
        copy = self.root / "outer" / "checkout"
        if not copy.exists():
            copy.mkdir(parents=True)
            self.keep(self.root / "outer" / "sentinel")
            for name in ("build.py", "VERSION", "clusterlab.yaml"):
                shutil.copy2(ROOT / name, copy / name)
            for name in ("clusterlab", "node"):
                shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns(
                    "__pycache__", "tests", "*.egg-info"))
            self.sentinels.append(copy / "build.py")
            self.watched += [copy, copy.parent]
        return copy

    @property
    def elsewhere(self) -> Path:
        """A folder outside the checkout that the builder did not make, with a file in it."""
        folder = self.root / "elsewhere"
        if not folder.exists():
            self.keep(folder / "sentinel")
            self.watched.append(folder)
        return folder


@pytest.fixture(scope="module")
def image_files(tmp_path_factory) -> dict:
    """A 4 MiB card image: MBR, a FAT partition holding cloud-init seed files like the built
    image's, an (empty) Linux partition; and its xz. Made with sfdisk, mkfs.vfat and mtools."""
    folder = tmp_path_factory.mktemp("image")
    image, seed = folder / "x.img", folder / "seed"
    seed.mkdir()
    (seed / "meta-data").write_text("instance-id: clusterlab\nlocal-hostname: clusterlab\n")
    (seed / "user-data").write_text("#cloud-config\nusers:\n  - default\n")
    (seed / "network-config").write_text("version: 2\nethernets:\n  eth0:\n    dhcp4: true\n")
    with open(image, "wb") as f:
        f.truncate(4 << 20)
    table = "label: dos\nlabel-id: 0x1234abcd\nunit: sectors\n\n" \
            "start=2048, size=4096, type=c\nstart=6144, size=2048, type=83\n"
    subprocess.run(["sfdisk", "-q", "--no-reread", "--no-tell-kernel", str(image)],
                   input=table.encode(), check=True, capture_output=True)
    subprocess.run(["mkfs.vfat", "--invariant", "-n", "CL_BOOT", "-i", "1234abcd",
                    "--offset=2048", str(image), "2048"], check=True, capture_output=True)
    subprocess.run(["mcopy", "-i", f"{image}@@{1 << 20}", *map(str, sorted(seed.iterdir())),
                    "::/"], check=True, capture_output=True, env={**os.environ,
                                                              "MTOOLS_SKIP_CHECK": "1"})
    raw = image.read_bytes()
    xz = subprocess.run(["xz", "-1", "-c", str(image)], check=True, capture_output=True).stdout
    return {".img": raw, ".xz": xz}


@pytest.fixture
def scratch(tmp_path, image_files) -> Scratch:
    return Scratch(tmp_path, image_files)


# running the command line and judging what it did

def _limit_memory():
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def run_cli(s: Scratch, args: list, script: Path = ROOT / "build.py"):
    """build.py with args (str, bytes or paths); (exit status or 'timeout', stdout, stderr)."""
    argv = [os.fsencode(a) for a in (sys.executable, script, *args)]
    env = {**os.environ, "HOME": str(s.home), "PYTHONDONTWRITEBYTECODE": "1"}
    try:
        done = subprocess.run(argv, cwd=s.cwd, env=env, stdin=subprocess.DEVNULL,
                              capture_output=True, timeout=TIMEOUT, preexec_fn=_limit_memory)
    except subprocess.TimeoutExpired as e:
        return "timeout", (e.stdout or b"").decode(errors="replace"), \
            (e.stderr or b"").decode(errors="replace")
    return done.returncode, done.stdout.decode(errors="replace"), \
        done.stderr.decode(errors="replace")


def outside_state(s: Scratch) -> dict:
    """What must not change: the checkout's and the scratch parent's entries (images/ must not
    appear), a few files' modification times, the watched folders and the sentinels."""
    state = {}
    for folder in [ROOT, s.root.parent, *s.watched]:
        state[f"entries of {folder}"] = sorted(os.listdir(folder)) if folder.is_dir() else None
    for path in SENTINELS:
        state[f"mtime of {path}"] = path.stat().st_mtime_ns if path.exists() else None
    for path in s.sentinels:
        state[f"{path}"] = path.read_text() if path.is_file() else "gone"
    return state


def problems_of(status, out: str, err: str, mentions) -> list[str]:
    problems = []
    if status == "timeout":
        problems.append(f"timeout after {TIMEOUT}s")
    if "Traceback" in out + err:
        problems.append("traceback")
    if status == 0:
        problems.append("accepted (exit 0)")
    elif status not in (2, "timeout"):
        problems.append(f"exit status {status}")
    lines = err.splitlines()
    if len(lines) != 1:
        problems.append(f"{len(lines)} lines on stderr")
    line = lines[-1] if lines else ""
    if lines and not line.startswith("error: "):
        problems.append("the last line does not start with 'error: '")
    for wanted in mentions:
        choices = wanted if isinstance(wanted, tuple) else (wanted,)
        if lines and not any(choice in line for choice in choices):
            problems.append(f"the message names none of {choices}")
    return problems


def expect_refused(s: Scratch, args: list, mentions=(), script: Path = ROOT / "build.py"):
    before = outside_state(s)
    status, out, err = run_cli(s, args, script)
    problems = problems_of(status, out, err, mentions)
    after = outside_state(s)
    changed = [key for key in before if before[key] != after.get(key)]
    if changed:
        problems.append("changed outside scratch: " + ", ".join(changed))
    assert not problems, f"{' | '.join(problems)}\nstderr: {err[-1500:]!r}\nstdout: {out[-300:]!r}"


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    args: Callable[[Scratch], list]  # build.py's arguments, made in the scratch folder
    mentions: tuple = ()  # what the error line names (a tuple inside: one of them)

    def __str__(self) -> str:
        return self.id


def table(cases: list[Case]):
    ids = [case.id for case in cases]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    return pytest.mark.parametrize("case", cases, ids=ids)


# config files: build.py config -c bad.yaml

WRONG_TYPES = {"list": "[1, two]", "mapping": "{a: 1}", "float": "1.5", "boolean": "true",
               "null": "null"}


def _schema_wrong_types() -> list[tuple]:
    """Every cluster setting of the node's schema (under its build key), with each wrong type."""
    rows = []
    for field in settings.FIELDS:
        key = cluster.build_key(field.key)
        for kind, value in WRONG_TYPES.items():
            if key == "containers" and kind == "mapping":
                value = "{web: 5}"  # a mapping is its type: entries that are not
            rows.append((f"{key}-{kind}", nested(key, value), key))
    return rows


CONFIG_TEXTS = [  # (id, file content, what the error names besides the file)
    # encodings and bytes
    ("latin1-value", b"hostname: caf\xe9\n"),
    ("latin1-comment", b"# r\xe9glages\narch: arm64\n"),
    ("utf16-bom-only", b"\xff\xfe"),
    ("utf16-text", "arch: armhf\n".encode("utf-16")),
    ("binary-garbage", garbage()),
    ("nul-in-text", b"hostname: node\0one\n"),
    ("bom-then-bad-value", b"\xef\xbb\xbfarch: x86\n", "arch"),
    # numbers YAML reads but Python will not convert or print
    ("huge-int", "image:\n  root_headroom_mib: " + HUGE_INT + "\n"),
    ("huge-int-cluster", nested("cluster.vlan_id", "9" * 5000)),
    ("huge-negative-int", nested("cluster.discovery_timeout", "-" + HUGE_INT)),
    ("nan", nested("cluster.vlan_id", ".nan"), "cluster.vlan_id"),
    ("infinity", nested("image.boot_headroom_mib", ".inf"), "image.boot_headroom_mib"),
    # values YAML reads as impossible dates
    ("impossible-date-int", nested("cluster.vlan_id", "2024-02-30")),
    ("impossible-date-suite", "base: {suite: 2024-13-45}\n"),
    ("impossible-timestamp", "hostname: 2024-02-28 25:61:00\n"),
    ("impossible-date-key", "2024-02-30: x\n"),
    # nesting deeper than any parser recursion
    ("nested-lists", "[" * DEEP + "]" * DEEP),
    ("nested-mappings", "{a: " * DEEP + "1" + "}" * DEEP),
    ("nested-lists-in-value", "hostname: " + "[" * DEEP + "]" * DEEP + "\n"),
    ("nested-compact-sequences", "users:\n" + "- " * DEEP + "x\n"),
    ("nested-in-containers", "containers:\n  web: " + "{a: " * DEEP + "1" + "}" * DEEP + "\n"),
    # duplicate keys (YAML forbids them; a reader that keeps the last hides a mistake)
    ("duplicate-key", "hostname: a\nhostname: b\n", "hostname"),
    ("duplicate-section", "image:\n  compression: xz\nimage:\n  compression: zstd\n", "image"),
    ("duplicate-nested-key", "image:\n  compression: xz\n  compression: zstd\n", "compression"),
    ("duplicate-in-flow-mapping", "base: {suite: trixie, suite: bookworm}\n", "suite"),
    ("duplicate-cluster-key", "cluster:\n  vlan_id: 10\n  vlan_id: 20\n", "vlan_id"),
    ("duplicate-container-entry", f"containers:\n  web: {WEB}}}\n  web: {WEB}}}\n", "web"),
    ("duplicate-container-field",
     "containers:\n  web:\n    tag: clusterlab/web:1\n    source: debian\n"
     "    packages: [busybox]\n    packages: [lighttpd]\n", "packages"),
    # anchors and aliases
    ("alias-bomb-moderate", f"users: {bomb(6, 10)}\n"),
    ("alias-bomb-billion-laughs", f"hostname: {bomb(9, 9)}\n"),
    # tabs
    ("tab-indent", "image:\n\tcompression: xz\n"),
    ("tab-indent-cluster", "cluster:\n\tvlan_id: 10\n"),
    # keys that are not text
    ("int-key", "1: x\n"),
    ("float-key", "1.5: x\n"),
    ("null-key", "null: x\n"),
    ("bool-key", "true: x\n"),
    ("list-key", "[a]: b\n"),
    ("mapping-key", "? {a: 1}\n: x\n"),
    ("int-key-in-section", "image:\n  1: x\n"),
    # container entries
    ("port-too-large", f"containers:\n  web: {WEB}, ports: [99999/tcp]}}\n", "ports"),
    ("port-zero", f"containers:\n  web: {WEB}, ports: [0/tcp]}}\n", "ports"),
    ("tag-uppercase", "containers:\n  web: {tag: 'Clusterlab/Web:1', source: debian, "
                      "packages: [busybox]}\n", "tag"),
    ("ref-uppercase", "containers:\n  web: {tag: 'clusterlab/web:1', source: registry, "
                      "ref: 'Docker.io/Library/Busybox:1.36'}\n", "ref"),
    # addresses with control characters or that are no URL
    ("mirror-nul", 'base:\n  mirror: "http://exa\\0mple.org/debian"\n', "base.mirror"),
    ("mirror-escape", 'base:\n  mirror: "http://exa\\x1bmple.org/debian"\n', "base.mirror"),
    ("mirror-delete", 'base:\n  mirror: "http://exa\\x7fmple.org/debian"\n', "base.mirror"),
    ("mirror-newline", 'base:\n  mirror: "http://exa\\nmple.org/debian"\n', "base.mirror"),
    ("mirror-space", "base:\n  mirror: http://exa mple.org/debian\n", "base.mirror"),
    ("mirror-without-host", "base:\n  mirror: http:///debian\n", "base.mirror"),
    ("security-mirror-nul", 'base:\n  security_mirror: "http://a\\0b/debian-security"\n',
     "base.security_mirror"),
    ("url-nul", 'base:\n  source: download\n  url: "https://exa\\0mple.org/os.img.xz"\n'
                f"  sha256: '{'0' * 64}'\n", "base.url"),
    # folders the builder would write into or remove
    ("cache-dir-root", "cache_dir: /\n", "cache_dir"),
    ("cache-dir-empty", "cache_dir: ''\n", "cache_dir"),
    ("cache-dir-home", "cache_dir: '~'\n", "cache_dir"),
    ("output-dir-empty", "image:\n  output_dir: ''\n", "image.output_dir"),
    ("output-dir-dot", "image:\n  output_dir: .\n", "image.output_dir"),
    ("output-dir-dotdot", "image:\n  output_dir: ..\n", "image.output_dir"),
    ("output-dir-climbing", "image:\n  output_dir: images/../..\n", "image.output_dir"),
    ("output-dir-root", "image:\n  output_dir: /\n", "image.output_dir"),
    ("output-dir-etc", "image:\n  output_dir: /etc\n", "image.output_dir"),
    ("output-dir-root-home", "image:\n  output_dir: /root\n", "image.output_dir"),
    ("output-dir-home", "image:\n  output_dir: '~'\n", "image.output_dir"),
    ("output-dir-checkout", f"image:\n  output_dir: '{ROOT}'\n", "image.output_dir"),
    # settings that only make sense together
    ("download-url-without-checksum",
     "base:\n  source: download\n  url: https://example.org/os.img.xz\n", "sha256"),
    ("download-without-image", "base:\n  source: download\n", "base"),
    ("preset-of-other-arch",
     "arch: armhf\nbase:\n  source: download\n  preset: raspios-lite-arm64\n",
     ("base.preset", "arch")),
    # very long values
    ("hostname-1mb", "hostname: " + "a" * (1 << 20) + "\n", "hostname"),
    ("cluster-name-1mb", nested("cluster.name", "a" * (1 << 20)), "cluster.name"),
    # every cluster setting of the schema with each wrong type
    *_schema_wrong_types(),
]
STAGES_IDS = ["latin1-value", "nested-lists", "duplicate-key", "download-url-without-checksum",
              "preset-of-other-arch"]  # the same files through `build.py stages`


def _config_case(verb: str, row: tuple) -> Case:
    name, content, *mentions = row
    return Case(f"{verb}-{name}", lambda s: [verb, "-c", s.write("bad.yaml", content)],
                ("bad.yaml", *mentions))


CONFIG_CASES = [_config_case("config", row) for row in CONFIG_TEXTS] + [
    _config_case("stages", row) for row in CONFIG_TEXTS if row[0] in STAGES_IDS] + [
    Case("config-a-directory", lambda s: ["config", "-c", s.mkdir("dir.yaml")], ("dir.yaml",)),
    Case("config-missing", lambda s: ["config", "-c", s.root / "in" / "none.yaml"],
         ("none.yaml",)),
]


@table(CONFIG_CASES)
def test_a_malformed_config_file_is_refused(scratch, case):
    expect_refused(scratch, case.args(scratch), case.mentions)


# --set values: build.py config --set KEY=VALUE

def _set(name: str, *values, mentions=()) -> Case:
    return Case(f"set-{name}", lambda s: ["config", *[a for v in values for a in ("--set", v)]],
                ("--set", *mentions))


SET_CASES = [
    _set("nested-lists", "hostname=" + "[" * DEEP + "]" * DEEP, mentions=("hostname",)),
    _set("nested-mappings", "users=" + "{a: " * DEEP + "1" + "}" * DEEP, mentions=("users",)),
    _set("nested-container-entry", "containers.web=" + "{a: " * DEEP + "1" + "}" * DEEP,
         mentions=("containers",)),
    _set("huge-int", "image.root_headroom_mib=" + HUGE_INT, mentions=("image.root_headroom_mib",)),
    _set("huge-int-cluster", "cluster.vlan_id=" + "9" * 5000, mentions=("cluster.vlan_id",)),
    _set("huge-int-text-setting", "hostname=" + HUGE_INT, mentions=("hostname",)),
    _set("impossible-date-suite", "base.suite=2024-13-45", mentions=("base.suite",)),
    _set("impossible-date-int", "cluster.vlan_id=2024-02-30", mentions=("cluster.vlan_id",)),
    _set("impossible-date-bool", "base.updates=2024-02-30", mentions=("base.updates",)),
    _set("impossible-timestamp-int", "image.boot_headroom_mib=2024-02-28 25:61:00",
         mentions=("image.boot_headroom_mib",)),
    _set("no-key", "=value"),
    _set("no-equals-sign", "hostname"),
    _set("empty-hostname", "hostname=", mentions=("hostname",)),
    _set("empty-arch", "arch=", mentions=("arch",)),
    _set("empty-vlan-id", "cluster.vlan_id=", mentions=("cluster.vlan_id",)),
    _set("empty-output-dir", "image.output_dir=", mentions=("image.output_dir",)),
    _set("output-dir-dot", "image.output_dir=.", mentions=("image.output_dir",)),
    _set("output-dir-dotdot", "image.output_dir=..", mentions=("image.output_dir",)),
    _set("output-dir-root", "image.output_dir=/", mentions=("image.output_dir",)),
    _set("empty-cache-dir", "cache_dir=", mentions=("cache_dir",)),
    _set("cache-dir-root", "cache_dir=/", mentions=("cache_dir",)),
    _set("unknown-key", "colour=blue", mentions=("colour",)),
    _set("unknown-nested-key", "image.colour=blue", mentions=("image.colour",)),
    _set("unknown-section", "nosuch.key=1", mentions=("nosuch.key",)),
    _set("key-with-spaces", " hostname =node", mentions=("hostname",)),
    _set("container-entry-bad-tag", "containers.web={tag: x}", mentions=("containers.web",)),
    _set("container-entry-port", f"containers.web={WEB}, ports: [99999/tcp]}}",
         mentions=("ports",)),
    _set("container-entry-duplicate-field",
         "containers.web={tag: 'clusterlab/web:1', tag: 'clusterlab/web:2', source: debian, "
         "packages: [busybox]}", mentions=("tag",)),
    _set("container-field-as-key", "containers.web.tag=clusterlab/web:2",
         mentions=("containers.web.tag",)),
    _set("non-utf8-value", b"hostname=\xff", mentions=("hostname",)),
    _set("non-utf8-key", b"\xff=1"),
    _set("non-utf8-mirror", b"base.mirror=http://exa\xffmple.org/debian",
         mentions=("base.mirror",)),
    _set("control-character-mirror", "base.mirror=http://exa\x01mple.org/debian",
         mentions=("base.mirror",)),
    _set("escape-mirror", "base.mirror=http://exa\x1bmple.org/debian", mentions=("base.mirror",)),
    _set("long-hostname", "hostname=" + "a" * 100_000, mentions=("hostname",)),
    _set("long-cluster-name", "cluster.name=" + "a" * 100_000, mentions=("cluster.name",)),
    _set("alias-bomb", f"users={bomb(9, 9)}", mentions=("users",)),
    _set("download-url-without-checksum", "base.source=download",
         "base.url=https://example.org/os.img.xz", mentions=("sha256",)),
    _set("preset-of-other-arch", "arch=armhf", "base.source=download",
         "base.preset=raspios-lite-arm64", mentions=(("base.preset", "arch"),)),
    *[_set(f"{field.key}-{kind}", f"cluster.{field.key}={WRONG_TYPES[kind]}",
           mentions=(f"cluster.{field.key}",))
      for field in settings.FIELDS if field.in_build for kind in ("list", "mapping")],
]


@table(SET_CASES)
def test_a_malformed_set_value_is_refused(scratch, case):
    expect_refused(scratch, case.args(scratch), case.mentions)


# flash: the image, the target and the per-card arguments (into a file under scratch, --yes)

def _flash_image(name: str, make: Callable[[Scratch], Path], mentions=()) -> Case:
    return Case(f"image-{name}", lambda s: s.flash(image=make(s)), mentions)


def _flash_device(name: str, make: Callable[[Scratch, Path], Path | str], device: str,
                  image="x.img") -> Case:
    def args(s: Scratch) -> list:
        source = s.image(image)
        return ["flash", source, "--device", make(s, source), "--yes"]
    return Case(f"device-{name}", args, (("--device", device),))


def _flash_option(name: str, *extra: Callable[[Scratch], list] | str | bytes,
                  mentions=()) -> Case:
    def args(s: Scratch) -> list:
        given = []
        for e in extra:
            given += e(s) if callable(e) else [e]
        return s.flash(*given)
    return Case(name, args, mentions)


def _xz_of(data: bytes) -> bytes:
    return subprocess.run(["xz", "-1", "-c"], input=data, check=True, capture_output=True).stdout


def _hard_link(s: Scratch, source: Path) -> Path:
    os.link(source, s.root / "in" / "link.img")
    return s.root / "in" / "link.img"


def _symlink(s: Scratch, source: Path) -> Path:
    (s.root / "in" / "sym.img").symlink_to(source)
    return s.root / "in" / "sym.img"


def _ssh_key(content: str | bytes) -> Callable[[Scratch], list]:
    return lambda s: ["--ssh-key", s.write("key.pub", content)]


def _user_data(content: str | bytes) -> Callable[[Scratch], list]:
    return lambda s: ["--user-data", s.write("user-data", content)]


FLASH_CASES = [
    _flash_image("missing", lambda s: s.root / "in" / "none.img", ("none.img",)),
    _flash_image("empty", lambda s: s.write("x.img", b""), ("x.img",)),
    _flash_image("text", lambda s: s.write("x.img", "just some text\n" * 100), ("x.img",)),
    _flash_image("random-bytes", lambda s: s.write("x.img", garbage(1 << 16)), ("x.img",)),
    _flash_image("zeros", lambda s: s.write("x.img", bytes(1 << 20)), ("x.img",)),
    _flash_image("xz-not-xz", lambda s: s.write("x.img.xz", "not xz\n"), ("x.img.xz",)),
    _flash_image("gz-not-gzip", lambda s: s.write("x.img.gz", "not gzip\n"), ("x.img.gz",)),
    _flash_image("zst-not-zstd", lambda s: s.write("x.img.zst", "not zstd\n"), ("x.img.zst",)),
    _flash_image("xz-truncated", lambda s: s.write(
        "x.img.xz", s.image_files[".xz"][:len(s.image_files[".xz"]) // 2]), ("x.img.xz",)),
    _flash_image("xz-of-random-bytes", lambda s: s.write("x.img.xz", _xz_of(garbage(1 << 16))),
                 ("x.img.xz",)),
    _flash_image("a-directory", lambda s: s.mkdir("x.img"), ("x.img",)),
    _flash_image("wrong-suffix", lambda s: s.image("x.iso"), ("x.iso",)),
    _flash_device("is-the-image", lambda s, image: image, "x.img"),
    _flash_device("is-the-image-by-another-path",
                  lambda s, image: f"{image.parent}/../{image.parent.name}/{image.name}",
                  "x.img"),
    _flash_device("hard-link-to-the-image", _hard_link, "link.img"),
    _flash_device("symlink-to-the-image", _symlink, "sym.img"),
    _flash_device("is-the-compressed-image", lambda s, image: image, "x.img.xz",
                  image="x.img.xz"),
    _flash_device("a-directory", lambda s, image: s.mkdir("dev-dir"), "dev-dir"),
    _flash_device("in-a-missing-folder", lambda s, image: s.root / "none" / "card.img",
                  "card.img"),
    _flash_device("dev-null", lambda s, image: "/dev/null", "/dev/null"),
    _flash_option("hostname-uppercase", "--hostname=Node1", mentions=("--hostname",)),
    _flash_option("hostname-64-characters", "--hostname=" + "a" * 64, mentions=("--hostname",)),
    _flash_option("hostname-leading-dash", "--hostname=-node", mentions=("--hostname",)),
    _flash_option("hostname-trailing-dash", "--hostname=node-", mentions=("--hostname",)),
    _flash_option("hostname-empty", "--hostname=", mentions=("--hostname",)),
    _flash_option("hostname-non-utf8", b"--hostname=n\xffde", mentions=("--hostname",)),
    _flash_option("hostname-underscore", "--hostname=node_1", mentions=("--hostname",)),
    _flash_option("hostname-space", "--hostname=node 1", mentions=("--hostname",)),
    _flash_option("hostname-newline", "--hostname=node\n1", mentions=("--hostname",)),
    _flash_option("ssh-key-empty", _ssh_key(""), mentions=("--ssh-key",)),
    _flash_option("ssh-key-binary", _ssh_key(garbage()), mentions=("--ssh-key",)),
    _flash_option("ssh-key-private", _ssh_key(PRIVATE_KEY), mentions=("--ssh-key",)),
    _flash_option("ssh-key-latin1", _ssh_key(KEY.encode() + b" caf\xe9\n"),
                  mentions=("--ssh-key",)),
    _flash_option("ssh-key-two-keys", _ssh_key(f"{KEY}\n{KEY}2\n"), mentions=("--ssh-key",)),
    _flash_option("ssh-key-directory", lambda s: ["--ssh-key", s.mkdir("keys")],
                  mentions=("--ssh-key",)),
    _flash_option("ssh-key-missing", lambda s: ["--ssh-key", s.root / "in" / "none.pub"],
                  mentions=("--ssh-key",)),
    *[_flash_option(f"user-{name}", _ssh_key(KEY), user, mentions=("--user",)) for name, user in [
        ("uppercase", "--user=Pi"), ("empty", "--user="), ("leading-dash", "--user=-pi"),
        ("33-characters", "--user=" + "a" * 33), ("colon", "--user=pi:x"),
        ("non-utf8", b"--user=p\xff")]],
    _flash_option("user-data-not-cloud-config", _user_data("users: []\n"),
                  mentions=("--user-data",)),
    _flash_option("user-data-binary", _user_data(garbage()), mentions=("--user-data",)),
    _flash_option("user-data-latin1", _user_data(b"#cloud-config\nhostname: caf\xe9\n"),
                  mentions=("--user-data",)),
    _flash_option("user-data-nested", _user_data("#cloud-config\nx: " + "[" * DEEP + "]" * DEEP),
                  mentions=("--user-data",)),
    _flash_option("user-data-nested-mappings",
                  _user_data("#cloud-config\nx: " + "{a: " * DEEP + "1" + "}" * DEEP),
                  mentions=("--user-data",)),
    _flash_option("user-data-duplicate-keys",
                  _user_data("#cloud-config\nusers: [default]\nusers: []\n"),
                  mentions=("--user-data",)),
    _flash_option("user-data-impossible-date", _user_data("#cloud-config\nx: 2024-02-30\n"),
                  mentions=("--user-data",)),
    _flash_option("user-data-huge-int", _user_data(f"#cloud-config\nx: {HUGE_INT}\n"),
                  mentions=("--user-data",)),
    _flash_option("user-data-tab-indent", _user_data("#cloud-config\nusers:\n\t- default\n"),
                  mentions=("--user-data",)),
    _flash_option("user-data-a-list", _user_data("#cloud-config\n- a\n"),
                  mentions=("--user-data",)),
    _flash_option("user-data-directory", lambda s: ["--user-data", s.mkdir("ud")],
                  mentions=("--user-data",)),
    _flash_option("user-data-missing", lambda s: ["--user-data", s.root / "in" / "none"],
                  mentions=("--user-data",)),
]


@table(FLASH_CASES)
def test_a_malformed_flash_argument_is_refused(scratch, case):
    expect_refused(scratch, case.args(scratch), case.mentions)


# the command line itself (argparse): the same one line

def _argv(name: str, make: Callable[[Scratch], list], *mentions) -> Case:
    return Case(f"argv-{name}", make, mentions)


ARGV_CASES = [
    _argv("no-verb", lambda s: [], ("VERB", "verb")),
    _argv("unknown-verb", lambda s: ["deploy"], "deploy"),
    _argv("unknown-option", lambda s: ["config", "--colour"], "--colour"),
    _argv("non-utf8-option", lambda s: ["config", b"--c\xffnfig"], "--c"),
    _argv("set-without-value", lambda s: ["config", "--set"], "--set"),
    _argv("flash-without-device", lambda s: ["flash", s.image()], "--device"),
    _argv("flash-device-without-value", lambda s: ["flash", s.image(), "--device"], "--device"),
    _argv("flash-hostname-taken-for-an-option",
          lambda s: s.flash("--hostname", "-node"), "--hostname"),
    _argv("boot-ssh-port-not-a-number", lambda s: ["boot", s.image(), "--ssh-port=abc"],
          "--ssh-port"),
]


@table(ARGV_CASES)
def test_a_malformed_command_line_is_refused(scratch, case):
    expect_refused(scratch, case.args(scratch), case.mentions)


# the files flash reads beside the image: <image>.bmap (raw image), <image>.xz.sha256

def bmap(image: bytes, ranges: list[str] | None = None, image_size=None, block_size=4096,
         version="2.0", checksum_type="sha256", head: str = "") -> str:
    """A bmaptool block map of image with its own checksum right, so that the reader gets past
    it to what is wrong; ranges are <Range> elements (default: one range over every block)."""
    blocks = -(-len(image) // block_size) if isinstance(block_size, int) and block_size > 0 else 1
    if ranges is None:
        ranges = [f'<Range chksum="{hashlib.sha256(image).hexdigest()}"> 0-{blocks - 1} </Range>']
    text = "\n".join([
        '<?xml version="1.0" ?>', head, f'<bmap version="{version}">',
        *([f"  <ImageSize> {image_size if image_size is not None else len(image)} </ImageSize>"]
          if image_size != "absent" else []),
        f"  <BlockSize> {block_size} </BlockSize>", f"  <BlocksCount> {blocks} </BlocksCount>",
        f"  <MappedBlocksCount> {blocks} </MappedBlocksCount>",
        f"  <ChecksumType> {checksum_type} </ChecksumType>",
        f"  <BmapFileChecksum> {'0' * 64} </BmapFileChecksum>",
        "  <BlockMap>", *[f"    {r}" for r in ranges], "  </BlockMap>", "</bmap>", ""])
    return text.replace("0" * 64, hashlib.sha256(text.encode()).hexdigest(), 1)


def _range(image: bytes, first: int, last: int, block_size: int = 4096) -> str:
    digest = hashlib.sha256(image[first * block_size:(last + 1) * block_size]).hexdigest()
    return f'<Range chksum="{digest}"> {first}-{last} </Range>'


XML_BOMB = ('<!DOCTYPE bmap [<!ENTITY a "aaaaaaaaaa">'
            + "".join(f'<!ENTITY {chr(98 + i)} "{("&" + chr(97 + i) + ";") * 10}">'
                      for i in range(8)) + "]>")


def _beside_bmap(name: str, content: Callable[[bytes], str | bytes]) -> Case:
    def args(s: Scratch) -> list:
        image = s.image("x.img")
        s.write("x.img.bmap", content(s.image_files[".img"]))
        return s.flash(image=image)
    return Case(f"bmap-{name}", args, ("x.img.bmap",))


def _beside_sha256(name: str, content: Callable[[bytes], str | bytes], image="x.img.xz") -> Case:
    def args(s: Scratch) -> list:
        path = s.image(image)
        listed = s.root / "in" / f"{image}.sha256"
        if content is None:
            listed.mkdir()
        else:
            s.write(listed.name, content(path.read_bytes()))
        return s.flash(image=path)
    return Case(f"sha256-{name}" + ("" if image == "x.img.xz" else "-beside-raw"), args,
                (f"{image}.sha256",))


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


BESIDE_CASES = [
    _beside_bmap("empty", lambda image: ""),
    _beside_bmap("binary", lambda image: garbage()),
    _beside_bmap("latin1", lambda image: bmap(image, head="<!-- caf\xe9 -->").encode("latin-1")),
    _beside_bmap("not-xml", lambda image: "ImageSize 4194304\n"),
    _beside_bmap("truncated", lambda image: bmap(image)[:len(bmap(image)) // 2]),
    _beside_bmap("damaged", lambda image: bmap(image).replace("<BlockSize> 4096",
                                                              "<BlockSize> 4097")),
    _beside_bmap("version-1", lambda image: bmap(image, version="1.4")),
    _beside_bmap("sha1", lambda image: bmap(image, checksum_type="sha1")),
    _beside_bmap("empty-range", lambda image: bmap(image, ranges=["<Range/>"])),
    _beside_bmap("range-not-numbers", lambda image: bmap(image, ranges=[
        f'<Range chksum="{_sha(image)}"> a-b </Range>'])),
    _beside_bmap("negative-range", lambda image: bmap(image, ranges=[
        f'<Range chksum="{_sha(image)}"> 0--5 </Range>'])),
    _beside_bmap("reversed-range", lambda image: bmap(image, ranges=[
        f'<Range chksum="{_sha(image)}"> 100-10 </Range>'])),
    _beside_bmap("range-past-image-size", lambda image: bmap(image, ranges=[
        f'<Range chksum="{_sha(image)}"> 0-99999999 </Range>'])),
    _beside_bmap("overlapping-ranges", lambda image: bmap(image, ranges=[
        _range(image, 0, 10), _range(image, 5, 1023)])),
    _beside_bmap("image-size-absurd", lambda image: bmap(image, image_size=10 ** 30)),
    _beside_bmap("image-size-negative", lambda image: bmap(image, image_size=-1)),
    _beside_bmap("image-size-zero", lambda image: bmap(image, image_size=0)),
    _beside_bmap("image-size-text", lambda image: bmap(image, image_size="big")),
    _beside_bmap("image-size-absent", lambda image: bmap(image, image_size="absent")),
    _beside_bmap("block-size-zero", lambda image: bmap(image, block_size=0, ranges=[
        f'<Range chksum="{_sha(image)}"> 0-1023 </Range>'])),
    _beside_bmap("xml-entity-bomb", lambda image: bmap(image, head=XML_BOMB).replace(
        "</bmap>", "<x>&i;</x></bmap>")),
    _beside_sha256("empty", lambda image: ""),
    _beside_sha256("binary", lambda image: garbage()),
    _beside_sha256("latin1", lambda image: f"{_sha(image)}  x\xe9.img.xz\n".encode("latin-1")),
    _beside_sha256("wrong-file-name", lambda image: f"{_sha(image)}  other.img.xz\n"),
    _beside_sha256("non-hex-digest", lambda image: "z" * 64 + "  x.img.xz\n"),
    _beside_sha256("short-digest", lambda image: "abc123  x.img.xz\n"),
    _beside_sha256("a-directory", None),
    _beside_sha256("empty", lambda image: "", image="x.img"),
]


@table(BESIDE_CASES)
def test_a_malformed_file_beside_the_image_is_refused(scratch, case):
    expect_refused(scratch, case.args(scratch), case.mentions)


# boot: only files that cannot reach QEMU (the small image has no config.txt, no kernel)

BOOT_CASES = [Case(f"boot-{name}", lambda s, make=make: ["boot", make(s)], (mention,))
              for name, make, mention in [
    ("missing", lambda s: s.root / "in" / "none.img", "none.img"),
    ("empty", lambda s: s.write("x.img", b""), "x.img"),
    ("text", lambda s: s.write("x.img", "just some text\n"), "x.img"),
    ("random-bytes", lambda s: s.write("x.img", garbage(1 << 16)), "x.img"),
    ("a-directory", lambda s: s.mkdir("x.img"), "x.img"),
    ("wrong-suffix", lambda s: s.image("x.qcow2"), "x.qcow2"),
    ("compressed", lambda s: s.image("x.img.xz"), "x.img.xz"),
    ("no-config-txt", lambda s: s.image("x.img"), "x.img"),
]]


@table(BOOT_CASES)
def test_a_malformed_boot_argument_is_refused(scratch, case):
    expect_refused(scratch, case.args(scratch), case.mentions)


# clean, in a scratch copy of the checkout's code

@dataclasses.dataclass(frozen=True)
class CleanCase(Case):
    # aimed at a real folder outside scratch: run clean only once config refuses the same
    guarded: bool = False


def _clean(name: str, setting: str, value: Callable[[Scratch], str] | str, cache=False,
           guarded=False, config_file=False, folder: str = "") -> CleanCase:
    """clean with setting = value; the error names the setting, or the folder (by name)."""
    def args(s: Scratch) -> list:
        s.checkout  # made before the snapshot, in scratch
        text = value(s) if callable(value) else value
        if config_file:
            given = ["-c", s.write("clean.yaml", nested(setting, f"'{text}'"))]
        else:
            given = ["--set", f"{setting}={text}"]
        return ["clean", *(["--cache"] if cache else []), *given]
    mentions = (*(["clean.yaml"] if config_file else []), (setting, folder) if folder else setting)
    return CleanCase(f"clean-{name}", args, mentions, guarded)


def _climbing(s: Scratch) -> str:
    (s.checkout / "images").mkdir()  # so that images/.. resolves
    return "images/../.."


def _link_to_elsewhere(s: Scratch) -> str:
    link = s.root / "in" / "images-link"
    link.symlink_to(s.elsewhere)
    return str(link)


def _foreign_cache(s: Scratch) -> str:
    s.keep(s.root / "foreign-cache" / "sentinel")
    s.watched.append(s.root / "foreign-cache")
    return str(s.root / "foreign-cache")


def _cwd_kept(s: Scratch) -> str:
    s.watched.append(s.cwd)
    return ""


CLEAN_CASES = [
    _clean("output-dir-empty", "image.output_dir", ""),
    _clean("output-dir-dot", "image.output_dir", "."),
    _clean("output-dir-dotdot", "image.output_dir", ".."),
    _clean("output-dir-climbing", "image.output_dir", _climbing),
    _clean("output-dir-the-checkout", "image.output_dir", lambda s: str(s.checkout)),
    _clean("output-dir-foreign-folder", "image.output_dir", lambda s: str(s.elsewhere),
           folder="elsewhere"),
    _clean("output-dir-a-file", "image.output_dir", lambda s: str(s.elsewhere / "sentinel"),
           folder="sentinel"),
    _clean("output-dir-symlink-to-foreign-folder", "image.output_dir", _link_to_elsewhere,
           folder="images-link"),
    _clean("output-dir-dotdot-in-config-file", "image.output_dir", "..", config_file=True),
    _clean("output-dir-root", "image.output_dir", "/", guarded=True),
    _clean("output-dir-root-home", "image.output_dir", "/root", guarded=True),
    _clean("output-dir-home", "image.output_dir", "~", guarded=True),
    _clean("cache-dir-root", "cache_dir", "/", cache=True, guarded=True),
    _clean("cache-dir-home", "cache_dir", "~", cache=True, guarded=True),
    _clean("cache-dir-foreign-folder", "cache_dir", _foreign_cache, cache=True,
           folder="foreign-cache"),
    _clean("cache-dir-empty", "cache_dir", _cwd_kept, cache=True),
    _clean("cache-dir-dotdot", "cache_dir", "..", cache=True),
    _clean("cache-dir-the-checkout", "cache_dir", lambda s: str(s.checkout), cache=True),
]


@table(CLEAN_CASES)
def test_a_dangerous_clean_is_refused(scratch, case):
    args = case.args(scratch)
    script = scratch.checkout / "build.py"
    if case.guarded:
        status, _, err = run_cli(scratch, ["config", *[a for a in args[1:] if a != "--cache"]],
                                 script)
        assert status == 2, (f"accepted (exit {status}) by config: clean not run against a "
                             f"real folder\nstderr: {err[-1500:]!r}")
    expect_refused(scratch, args, case.mentions, script)


# the well-formed inputs the cases above spoil are accepted (else a case proves nothing)

def test_the_small_image_with_its_bmap_and_card_settings_is_flashed(scratch):
    scratch.write("x.img.bmap", bmap(scratch.image_files[".img"]))
    key = scratch.write("key.pub", KEY + "\n")
    user_data = scratch.write("user-data", "#cloud-config\nusers: [default]\n")
    status, _, err = run_cli(scratch, scratch.flash("--hostname=node1", "--user=pi",
                                                    "--ssh-key", key, "--user-data", user_data))
    assert status == 0, err
    assert scratch.target.stat().st_size == len(scratch.image_files[".img"])


def test_the_compressed_image_with_its_sha256_is_flashed(scratch):
    scratch.write("x.img.xz.sha256", f"{_sha(scratch.image_files['.xz'])}  x.img.xz\n")
    status, _, err = run_cli(scratch, scratch.flash(image=scratch.image("x.img.xz")))
    assert status == 0, err
    assert scratch.target.read_bytes() == scratch.image_files[".img"]


def test_a_config_file_and_set_values_are_accepted(scratch):
    path = scratch.write("good.yaml", f"hostname: node1\ncontainers:\n  web: {WEB}}}\n")
    status, out, err = run_cli(scratch, ["config", "-c", path, "--set", "cluster.vlan_id=10"])
    assert status == 0, err
    assert "hostname: node1" in out


def test_clean_runs_in_the_scratch_checkout(scratch):
    """With nothing to remove: a folder the builder made cannot be had without a build."""
    status, _, err = run_cli(scratch, ["clean", "--cache", "--set",
                                       f"cache_dir={scratch.root / 'no-cache'}"],
                             scratch.checkout / "build.py")
    assert status == 0, err
    assert (scratch.checkout / "build.py").exists()
