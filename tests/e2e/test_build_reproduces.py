"""A second cold build of the same checkout, in a cache of its own, gives the same image: every
layer, the initramfs, the Python byte-code and the container images are made again. Only the
downloaded packages are shared (downloading is no build step). It takes as long as a cold build,
so CI leaves it out; it runs first, before the cluster's nodes take the processors."""

import subprocess
import sys
from pathlib import Path

import pytest

from clusterlab import config, export

ROOT = Path(__file__).resolve().parents[2]
DOWNLOADS = ("apt-archives", "container-debs")  # the cache's folders of downloaded packages

pytestmark = [pytest.mark.e2e, pytest.mark.cold_rebuild]


def test_a_second_cold_build_in_a_cache_of_its_own_gives_the_same_image(image, tmp_path):
    shared = config.load([], []).cache_dir  # where the image fixture built
    own = tmp_path / "cache"
    own.mkdir()
    for folder in DOWNLOADS:
        if (shared / folder).exists():
            subprocess.run(["cp", "-al", str(shared / folder), str(own)], check=True)
    out = tmp_path / "images"
    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "build",
                             "--set", f"image.output_dir={out}", "--set", f"cache_dir={own}",
                             "--set", "image.compression=zstd"], cwd=ROOT)
    assert result.returncode == 0, "the second cold build failed (its log is above)"
    assert export.sha256_of(out / image.name) == export.sha256_of(image)
