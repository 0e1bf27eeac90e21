"""Rebuilds reuse the cache: a template edit rebuilds only the stages that depend on it, and a
build with nothing changed keeps its outputs. Asserted from the build's step record."""

import json
import subprocess
import sys
from pathlib import Path

import checkout
import pytest

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
STEPS_RECORD = "*.steps.json"  # written by every build beside its manifest: no output


def is_layer(name: str) -> bool:
    return name in ("base", "containers into tree", "finish", "strip") or name.startswith("stage ")


def build(project: Path) -> dict[str, str | bool]:
    """Build; return the result ("built" or "cached") of each step that makes a layer, as the
    build recorded it, and under "nothing changed" whether its outcome was "unchanged"."""
    result = subprocess.run([sys.executable, str(project / "build.py"), "build",
                             "--set", "image.compression=zstd"],
                            cwd=project, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    record_path, = (project / "images").glob(STEPS_RECORD)
    record = json.loads(record_path.read_text())
    steps = {s["name"]: s["result"] for s in record["steps"] if is_layer(s["name"])}
    assert set(steps.values()) <= {"built", "cached"}, record
    assert record["outcome"] in ("built", "unchanged"), record
    steps["nothing changed"] = record["outcome"] == "unchanged"
    return steps


def test_template_edit_rebuilds_only_the_stages_that_use_it(project):
    build(project)  # this copy's version differs from the checkout's: its seed stage differs
    checkout.edit_uniquely(project / "templates/boot/meta-data.j2")
    steps = build(project)
    assert steps["base"] == steps["stage 10-base"] == steps["stage 20-system"] == "cached"
    assert steps["stage 30-docker"] == "cached"
    assert steps["stage 90-first-boot"] == "built"
    assert steps["finish"] == "built" and not steps["nothing changed"]
    image, = (project / "images").glob("*.img")
    assert image.stat().st_size > 0


def outputs(project: Path) -> dict[Path, int]:
    """Every file in images/ but the steps record (of the build, no output), with its mtime."""
    return {p: p.stat().st_mtime_ns for p in (project / "images").iterdir()
            if not p.match(STEPS_RECORD)}


def test_nothing_changed_keeps_the_outputs(project):
    build(project)
    manifests = list((project / "images").glob("*.manifest.json"))
    before = outputs(project)
    steps = build(project)
    assert steps.pop("nothing changed") is True, steps
    assert steps and all(result == "cached" for result in steps.values()), steps
    assert outputs(project) == before
    assert manifests
