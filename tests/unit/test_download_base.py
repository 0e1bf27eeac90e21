"""The download base's inputs: presets, settings, and the files it accepts or refuses."""

import lzma
import re
import subprocess
import zipfile
from pathlib import Path

import pytest

from clusterlab import arch, config
from clusterlab.base import image, presets
from clusterlab.errors import BuildError, UserError

ROOT = Path(__file__).resolve().parents[2]


def settings(*overrides: str) -> config.Config:
    return config.load([ROOT / "clusterlab.yaml"], ["base.source=download", *overrides])


def small_image(path: Path, types: list[str]) -> Path:
    """A 16 MiB image whose partition table has partitions of the given types (no contents)."""
    subprocess.run(["truncate", "--size", "16M", str(path)], check=True)
    table = "label: dos\n" + "".join(f"start={2048 + i * 8192}, size=8192, type={t}\n"
                                     for i, t in enumerate(types))
    subprocess.run(["sfdisk", "--quiet", str(path)], input=table.encode(), check=True)
    return path


@pytest.mark.parametrize("name", sorted(presets.PRESETS))
def test_presets_name_https_addresses_with_published_checksums(name):
    preset = presets.PRESETS[name]
    assert re.fullmatch(r"https://\S+\.img\.(xz|zip)", preset.url)
    assert preset.sha256_url == preset.url + ".sha256"
    assert preset.boot_mount in ("/boot", "/boot/firmware") and preset.arch in arch.BOARD_ARCHES


def test_a_preset_sets_the_source_and_must_match_the_architecture():
    src = image.source(settings("base.preset=raspios-lite-arm64"))
    assert src.url == presets.PRESETS["raspios-lite-arm64"].url
    with pytest.raises(UserError, match=r"^--set: base.preset: expected a preset for arch arm64 "
                       r"\(raspios-lite-arm64\), got string 'hypriotos-1.12.3' \(an armhf image\)$"):
        image.source(settings("base.preset=hypriotos-1.12.3"))


def test_a_url_needs_a_checksum_and_a_download_base_needs_a_url():
    with pytest.raises(UserError, match=r"^--set: base.url: expected the address of the base "):
        image.source(settings())
    with pytest.raises(UserError, match=r"^--set: base.sha256: expected the checksum of base.url"):
        image.source(settings("base.url=http://127.0.0.1/x.img.xz"))
    with pytest.raises(UserError, match=r"^--set: base.url: expected the address of an \.img, "):
        image.source(settings("base.url=http://127.0.0.1/x.iso", "base.sha256=" + "0" * 64))
    with pytest.raises(UserError, match="base.sha256"):
        settings("base.sha256=ABC")


def test_compressed_and_zipped_images_are_unpacked(tmp_path):
    raw = small_image(tmp_path / "vendor.img", ["c", "83"])
    xz = tmp_path / "vendor.img.xz"
    xz.write_bytes(lzma.compress(raw.read_bytes()))
    zipped = tmp_path / "vendor.zip"
    with zipfile.ZipFile(zipped, "w") as archive:
        archive.write(raw, "vendor.img")
        archive.writestr("README.txt", "not an image")
    for packed in (xz, zipped):
        out = image.unpacked(packed, tmp_path / f"out-{packed.suffix}.img")
        assert out.read_bytes() == raw.read_bytes()


def test_a_zip_must_hold_exactly_one_image(tmp_path):
    raw = small_image(tmp_path / "vendor.img", ["c", "83"])
    for count in (0, 2):
        zipped = tmp_path / f"{count}.zip"
        with zipfile.ZipFile(zipped, "w") as archive:
            for i in range(count):
                archive.write(raw, f"vendor{i}.img")
        with pytest.raises(UserError, match=f"expected one .img in the zip, found {count}"):
            image.unpacked(zipped, tmp_path / "out.img")
    assert not list(tmp_path.glob("out.img*"))


def test_a_file_that_is_no_image_is_refused_and_not_kept(tmp_path):
    junk = tmp_path / "junk.img.xz"
    junk.write_bytes(lzma.compress(b"hello" * 1000))
    with pytest.raises(UserError, match="not a disk image"):
        image.unpacked(junk, tmp_path / "out.img")
    broken = tmp_path / "broken.img.xz"
    broken.write_bytes(b"not xz at all")
    with pytest.raises(BuildError, match="cannot decompress"):
        image.unpacked(broken, tmp_path / "out2.img")
    assert not list(tmp_path.glob("out*"))


def test_a_partition_table_without_a_linux_root_is_refused(tmp_path):
    raw = small_image(tmp_path / "vendor.img", ["c", "7"])
    with pytest.raises(UserError, match=r"no Linux root partition .*types: c, 7"):
        image.extract(raw, tmp_path / "tree", "/boot/firmware", "http://x/vendor.img")
