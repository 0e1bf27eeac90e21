"""The image version and the build's timestamp."""

import os
import subprocess
from pathlib import Path

from .errors import UserError


def _git(root: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return result.stdout.strip() if result.returncode == 0 else None


def version(root: Path) -> str:
    """VERSION, plus `git describe` when HEAD is not the tag v<VERSION> or the tree is dirty."""
    try:
        base = (root / "VERSION").read_text().strip()
    except FileNotFoundError:
        raise UserError(f"{root / 'VERSION'}: missing; it holds the version, e.g. 0.1.0") from None
    described = _git(root, "describe", "--tags", "--always", "--dirty")
    if described is None or described == f"v{base}":
        return base
    return f"{base}+{described.replace('-', '.')}"


def source_date_epoch(root: Path) -> int:
    """SOURCE_DATE_EPOCH if set, else the last commit's time, else (a checkout without git) the
    VERSION file's modification time: never the current time, which would make every build
    differ from the one before."""
    if "SOURCE_DATE_EPOCH" in os.environ:
        try:
            return int(os.environ["SOURCE_DATE_EPOCH"])
        except ValueError:
            raise UserError(f"SOURCE_DATE_EPOCH: expected seconds since 1970, got "
                            f"{os.environ['SOURCE_DATE_EPOCH']!r}") from None
    committed = _git(root, "log", "-1", "--format=%ct")
    return int(committed) if committed else int((root / "VERSION").stat().st_mtime)
