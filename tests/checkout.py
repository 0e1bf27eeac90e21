"""A copy of the checkout, for tests that edit the project (a stage, a template) as a user would
edit theirs."""

import shutil
import uuid
from pathlib import Path

from clusterlab import pipeline

ROOT = Path(__file__).resolve().parents[1]


def copy_to(folder: Path) -> Path:
    """The project's files in folder; its version differs from the checkout's, so a build of it
    makes the first-boot stage anew and takes the others from the cache."""
    for name in ("build.py", "VERSION", "clusterlab.yaml"):
        shutil.copy(ROOT / name, folder / name)
    for name in ("clusterlab", *pipeline.Project.FOLDERS):
        shutil.copytree(ROOT / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def edit_uniquely(path: Path) -> None:
    """An edit no earlier run made (a comment), so that no cached layer can match it."""
    path.write_text(path.read_text() + f"# edited {uuid.uuid4()}\n")
