"""One real image, built once per test run with the project's own command, shared by the tests;
and a copy of the checkout for the modules that edit it."""

import json
import os
import subprocess
import sys
from pathlib import Path

import checkout
import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def built(tmp_path_factory):
    """Build the default image into a temporary folder and return its output files."""
    if os.geteuid() != 0:
        pytest.fail("the integration tests build an image and need root")
    out = tmp_path_factory.mktemp("images")
    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "build",
                             "--set", f"image.output_dir={out}"], cwd=ROOT)
    assert result.returncode == 0, "the image build failed (its log is above)"
    manifest_path, = out.glob("*.manifest.json")
    manifest = json.loads(manifest_path.read_text())
    name = manifest["name"]
    return {"dir": out, "manifest": manifest, "manifest_path": manifest_path,
            "img": out / f"{name}.img", "xz": out / f"{name}.img.xz",
            "sha256": out / f"{name}.img.xz.sha256", "bmap": out / f"{name}.img.bmap"}


@pytest.fixture(scope="module")
def project(built, module_tmp):
    """A copy of the checkout, for a module that edits it (after the shared build, so the cache
    is warm)."""
    return checkout.copy_to(module_tmp)
