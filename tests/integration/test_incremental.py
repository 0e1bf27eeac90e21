"""Rebuilds reuse the cache: a template edit rebuilds only the stages that depend on it, and a
build with nothing changed keeps its outputs. Asserted from the build's own step log."""

import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
FROM_CACHE = "unchanged: taken from the cache"


@pytest.fixture(scope="module")
def project(built, tmp_path_factory):
    """A copy of the checkout (after the shared build, so the cache is warm)."""
    copy = tmp_path_factory.mktemp("project")
    for name in ("build.py", "VERSION", "clusterlab.yaml"):
        shutil.copy(ROOT / name, copy / name)
    for name in ("clusterlab", "stages", "templates", "overlay-files"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    return copy


def build(project: Path) -> dict[str, bool]:
    """Build; return for each step whether it came from the cache."""
    result = subprocess.run([sys.executable, str(project / "build.py"), "build",
                             "--set", "image.compression=zstd"],
                            cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    steps, current = {}, None
    for line in result.stderr.splitlines():
        started = re.match(r"‣ (.+)", line)
        if started:
            # only the steps that make a layer count; nested steps are indented
            layer = re.match(r"base|stage [^:\s]+|finish tree|strip tree|"
                             r"container images into the tree", started.group(1))
            current = layer.group(0) if layer else None
            if current:
                steps[current] = False
        elif current and FROM_CACHE in line:
            steps[current] = True
    steps["nothing changed"] = "nothing changed since the last build" in result.stderr
    return steps


def test_template_edit_rebuilds_only_the_stages_that_use_it(project):
    build(project)  # this copy's version differs from the checkout's: its seed stage differs
    meta_data = project / "templates/boot/meta-data.j2"
    # an edit no earlier run made, so no cached layer can match it
    meta_data.write_text(meta_data.read_text() + f"# edited {uuid.uuid4()}\n")
    steps = build(project)
    assert steps["base"] and steps["stage 10-base"] and steps["stage 20-system"]
    assert steps["stage 30-docker"]
    assert not steps["stage 90-first-boot"]
    assert not steps["finish tree"] and not steps["nothing changed"]
    image, = (project / "images").glob("*.img")
    assert image.stat().st_size > 0


def test_nothing_changed_keeps_the_outputs(project):
    build(project)
    manifests = list((project / "images").glob("*.manifest.json"))
    before = {p: p.stat().st_mtime_ns for p in (project / "images").iterdir()}
    steps = build(project)
    assert all(steps.values()), steps
    assert {p: p.stat().st_mtime_ns for p in (project / "images").iterdir()} == before
    assert manifests
