"""An output folder without room for the image: the build says so, with the numbers, before it
writes the image, and leaves nothing behind but the record of its steps."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from clusterlab import folders

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def small_folder(tmp_path):
    """A 64 MiB file system of its own: far too small for an image."""
    folder = tmp_path / "small"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", str(folder)], check=True)


def test_a_full_output_folder_is_refused_with_the_space_needed(built, small_folder):
    out = small_folder / "images"
    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "build",
                             "--set", f"image.output_dir={out}"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 2, result.stderr[-3000:]
    error = result.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: not enough free space in {out} for "), error
    needed, free = (float(word) for word in error.split() if word.replace(".", "").isdigit())
    assert needed > 500 and 0 < free <= 64, error
    record_path, = out.glob("*.steps.json")
    assert sorted(p.name for p in out.iterdir()) == [folders.MARKER, record_path.name]
    assert json.loads(record_path.read_text())["outcome"] == "failed"
