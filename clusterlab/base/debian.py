"""The Debian base: a minimal tree made by mmdebstrap from the Debian archive.

Its cache key includes the Date of each suite's InRelease, so the cached base (with its package
lists) is reused until the archive publishes something new, and never mixes two archive states.
"""

import hashlib
import json
import tempfile
from pathlib import Path

import requests

from .. import log
from ..config import Config
from ..errors import BuildError
from ..run import run

COMPONENTS = "main non-free-firmware"
# Kept out of the image, now and by later upgrades on the node: documentation nobody reads on a
# cluster node, and what takes long to unpack under emulation. Copyright files stay, as Debian's
# licences ask. The kernel's device trees stay for Raspberry Pi boards only (Broadcom's: in
# broadcom/ on arm64, named bcm2… on armhf), those that raspi-firmware copies to the boot
# partition; the other boards' are a tenth of the image.
NO_DOCUMENTATION = ["path-exclude=/usr/share/man/*", "path-exclude=/usr/share/doc/*",
                    "path-include=/usr/share/doc/*/copyright", "path-exclude=/usr/share/info/*",
                    "path-exclude=/usr/share/locale/*"]
DPKG_EXCLUDES = [*NO_DOCUMENTATION, "path-include=/usr/share/locale/locale.alias",
                 "path-exclude=/usr/lib/linux-image-*/*",
                 "path-include=/usr/lib/linux-image-*/broadcom/*",
                 "path-include=/usr/lib/linux-image-*/bcm2*"]


def apt_sources(config: Config, suite: str | None = None) -> list[str]:
    """The apt sources of the configured mirrors for suite (the image's own by default)."""
    suite, mirror = suite or config["base.suite"], config["base.mirror"]
    lines = [f"deb {mirror} {suite} {COMPONENTS}"]
    if config["base.updates"]:
        lines.append(f"deb {mirror} {suite}-updates {COMPONENTS}")
    if config["base.security_mirror"]:
        lines.append(f"deb {config['base.security_mirror']} {suite}-security {COMPONENTS}")
    return lines


def archive_state(sources: list[str]) -> list[dict[str, str]]:
    """For each apt source, the Date of its suite's InRelease: it changes whenever the archive
    does, and names the snapshot.debian.org state that holds the same packages."""
    state = []
    for line in sources:
        _, mirror, suite, *_ = line.split()
        url = f"{mirror.rstrip('/')}/dists/{suite}/InRelease"
        try:
            response = requests.get(url, timeout=30)
            response.raise_for_status()
        except requests.RequestException as e:
            raise BuildError(f"cannot read {url}: {e}; check base.mirror and the network") from None
        date = next((l for l in response.text.splitlines() if l.startswith("Date:")), "Date: ?")
        state.append({"source": line, "date": date.removeprefix("Date:").strip()})
    return state


def mmdebstrap_argv(config: Config, sources: list[str], apt_cache: Path, output: Path) -> list[str]:
    hooks = ['--setup-hook=mkdir -p "$1/var/cache/apt/archives"',
             f"--setup-hook=sync-in {apt_cache}/ /var/cache/apt/archives/",
             f"--customize-hook=sync-out /var/cache/apt/archives/ {apt_cache}/"]
    return ["mmdebstrap", "--mode=root", "--variant=minbase", f"--arch={config['arch']}",
            "--format=directory", "--skip=cleanup/apt/lists", "--skip=cleanup/apt/cache",
            *[f"--dpkgopt={o}" for o in DPKG_EXCLUDES], *hooks,
            config["base.suite"], str(output), *sources]


def base_key(config: Config, archive: list[dict[str, str]]) -> str:
    """Changes with the mmdebstrap command line and with the archive's state."""
    argv_shape = mmdebstrap_argv(config, apt_sources(config), Path("APT"), Path("OUT"))
    return hashlib.sha256(json.dumps([argv_shape, archive]).encode()).hexdigest()


def bootstrap(config: Config, tree: Path) -> None:
    """Fill tree (an empty folder) with a minimal Debian for config's suite and arch."""
    apt_cache = config.cache_dir / "apt-archives"
    apt_cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mmdebstrap-", dir=config.cache_dir) as tmp:
        log.info(f"mmdebstrap {config['base.suite']} {config['arch']} (a few minutes; -v shows it)")
        run(mmdebstrap_argv(config, apt_sources(config), apt_cache, tree), env={"TMPDIR": tmp})
    # mmdebstrap leaves the build host's DNS settings behind; the image gets its own
    (tree / "etc/resolv.conf").unlink(missing_ok=True)
