"""Stages: folders `stages/NN-name/` with a `stage.yaml`, run in NN order.

A stage installs packages, copies its overlay folder and the project's Python packages it names
(the node agent, the demos), renders templates and runs scripts (in the image's chroot, or on the
host with the tree's path in $ROOTFS). Adding a stage is copying a folder.
"""

import dataclasses
import re
from pathlib import Path

from . import yamlfile
from .errors import UserError

STAGE_DIR = re.compile(r"(\d\d)-([a-z0-9][a-z0-9-]*)")
KEYS = {
    "description": "one line saying what the stage does",
    "packages": "a list of Debian package names (or {{ variables }})",
    "overlay": "a folder under overlay-files/ copied verbatim into the image",
    "python_packages": "a list of Python packages under node/ installed into the image",
    "templates": "a mapping of template (under templates/) to destination path in the image",
    "chroot_scripts": "a list of scripts in the stage folder run inside the image (chroot)",
    "host_scripts": "a list of scripts in the stage folder run on the host, $ROOTFS = the tree",
    "skip": "true to leave the stage out",
    "bases": "the bases the stage is for, a list of debian and download (default both)",
}
BASES = ("debian", "download")
# a Debian package name, or a template variable such as "{{ kernel_package }}"
PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+|\{\{ *[a-z_]+ *\}\}")


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str  # folder name, e.g. "20-system"
    path: Path
    description: str
    packages: tuple[str, ...]
    overlay: Path | None
    python_packages: tuple[Path, ...]  # package folders, installed into the image's python3
    templates: tuple[tuple[str, str], ...]  # (template name, absolute destination in the image)
    chroot_scripts: tuple[Path, ...]
    host_scripts: tuple[Path, ...]
    skip: bool
    bases: tuple[str, ...]  # base.source values the stage runs on

    def runs_on(self, base_source: str) -> bool:
        return not self.skip and base_source in self.bases

    def summary(self) -> str:
        parts = []
        if self.packages:
            parts.append(f"{len(self.packages)} packages")
        if self.overlay:
            parts.append(f"overlay {self.overlay.name}/")
        if self.python_packages:
            parts.append(", ".join(p.name for p in self.python_packages))
        if self.templates:
            parts.append(f"{len(self.templates)} templates")
        scripts = len(self.chroot_scripts) + len(self.host_scripts)
        if scripts:
            parts.append(f"{scripts} script{'s' if scripts > 1 else ''}")
        return ", ".join(parts) or "nothing"


def discover(stages_dir: Path, overlay_root: Path, templates_dir: Path,
             python_root: Path) -> list[Stage]:
    """All stages in NN order (skipped ones included, marked), each validated."""
    if not stages_dir.is_dir():
        raise UserError(f"{stages_dir}: stages folder not found")
    folders = sorted(p for p in stages_dir.iterdir() if p.is_dir())
    stages = []
    for folder in folders:
        if not STAGE_DIR.fullmatch(folder.name):
            raise UserError(f"{folder}: a stage folder is named NN-name (two digits, a dash, "
                            f"lower-case name), got {folder.name!r}")
        stages.append(_load(folder, overlay_root, templates_dir, python_root))
    numbers = [s.name[:2] for s in stages]
    for number in {n for n in numbers if numbers.count(n) > 1}:
        clash = ", ".join(s.name for s in stages if s.name.startswith(number))
        raise UserError(f"{stages_dir}: stages {clash} share the number {number}; "
                        f"give each its own so the order is clear")
    return stages


def _load(folder: Path, overlay_root: Path, templates_dir: Path, python_root: Path) -> Stage:
    file = folder / "stage.yaml"
    try:
        data = yamlfile.load(file.read_bytes(), str(file)) or {}
    except FileNotFoundError:
        raise UserError(f"{file}: missing; every stage folder needs a stage.yaml") from None
    except OSError as e:
        raise UserError(f"{file}: cannot read it: {e.strerror}") from None
    if not isinstance(data, dict):
        raise UserError(f"{file}: expected a mapping with keys {', '.join(KEYS)}")
    for key in data:
        if key not in KEYS:
            raise UserError(f"{file}: {key}: unknown key; expected one of {', '.join(KEYS)}")

    def fail(key: str, got) -> UserError:
        return UserError(f"{file}: {key}: expected {KEYS[key]}, got {got!r}")

    description = data.get("description", "")
    if not isinstance(description, str):
        raise fail("description", description)
    packages = data.get("packages", [])
    if not isinstance(packages, list) or not all(
            isinstance(p, str) and PACKAGE.fullmatch(p) for p in packages):
        raise fail("packages", packages)
    overlay = data.get("overlay")
    if overlay is not None:
        if not isinstance(overlay, str) or not (overlay_root / overlay).is_dir():
            raise fail("overlay", overlay)
        overlay = overlay_root / overlay
    python_packages = data.get("python_packages", [])
    if not isinstance(python_packages, list) or not all(
            isinstance(p, str) and re.fullmatch(r"[a-z_][a-z0-9_]*", p)
            and (python_root / p / "__init__.py").is_file() for p in python_packages):
        raise fail("python_packages", python_packages)
    templates = data.get("templates", {})
    if not isinstance(templates, dict) or not all(
            isinstance(src, str) and (templates_dir / src).is_file()
            and isinstance(dst, str) and dst.startswith("/") for src, dst in templates.items()):
        raise fail("templates", templates)
    skip = data.get("skip", False)
    if not isinstance(skip, bool):
        raise fail("skip", skip)
    bases = data.get("bases", list(BASES))
    if not isinstance(bases, list) or not bases or not set(bases) <= set(BASES):
        raise fail("bases", bases)
    return Stage(folder.name, folder, description, tuple(packages), overlay,
                 tuple(python_root / p for p in python_packages),
                 tuple(templates.items()), _scripts(file, folder, data, "chroot_scripts"),
                 _scripts(file, folder, data, "host_scripts"), skip, tuple(bases))


def _scripts(file: Path, folder: Path, data: dict, key: str) -> tuple[Path, ...]:
    names = data.get(key, [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise UserError(f"{file}: {key}: expected {KEYS[key]}, got {names!r}")
    for name in names:
        if not (folder / name).is_file():
            raise UserError(f"{file}: {key}: expected {KEYS[key]}, got {name!r}, "
                            f"which is not a file in {folder}")
    return tuple(folder / n for n in names)
