"""A build on a downloaded base image: the project's own image, served by an HTTP server on
127.0.0.1 as .xz and as .zip, fetched, checked, unpacked, customised by the stages, booted."""

import functools
import hashlib
import http.server
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from clusterlab import disk, export, folders, qemu
from clusterlab.base import image
import localnet
from localnet import free_port

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


class LoggingHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):
        self.server.requests.append(self.path)


@pytest.fixture(scope="module")
def served(built, module_tmp):
    """The built image as base.img.xz and base.zip on a file server on 127.0.0.1."""
    folder = module_tmp / "served"
    folder.mkdir()
    (folder / "base.img.xz").hardlink_to(built["xz"])
    with zipfile.ZipFile(folder / "base.zip", "w", zipfile.ZIP_DEFLATED, compresslevel=1) as z:
        z.write(built["img"], "clusterlab.img")
    with localnet.http_server(functools.partial(LoggingHandler, directory=str(folder))) as server:
        server.folder = folder
        yield server


def build(out: Path, url: str, sha256: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "build.py"), "build",
                           "--set", "base.source=download", "--set", f"base.url={url}",
                           "--set", f"base.sha256={sha256}",
                           "--set", f"image.output_dir={out}", "--set", "image.compression=zstd"],
                          cwd=ROOT, capture_output=True, text=True)


@pytest.fixture(scope="module")
def on_download(served, module_tmp):
    out = module_tmp / "on-download"
    sha256 = export.sha256_of(served.folder / "base.img.xz")
    result = build(out, f"{served.url}/base.img.xz", sha256)
    assert result.returncode == 0, result.stderr[-5000:]
    manifest = json.loads(next(out.glob("*.manifest.json")).read_text())
    return {"out": out, "result": result, "manifest": manifest, "sha256": sha256,
            "img": out / manifest["image"]["file"]}


def test_the_base_is_downloaded_and_the_debian_only_stage_left_out(on_download, served, built):
    record = json.loads(next(on_download["out"].glob("*.steps.json")).read_text())
    steps = {step["name"]: step for step in record["steps"]}
    assert steps["base"]["title"] == "base: base.img.xz"
    assert "stage 10-base" not in steps and "stage 20-system" in steps
    manifest = on_download["manifest"]
    assert manifest["archive"] == [{"source": f"{served.url}/base.img.xz",
                                    "sha256": on_download["sha256"]}]
    assert "10-base" not in manifest["stages"]
    # the vendor's partition ids stay valid: the output keeps its disk id
    assert manifest["image"]["disk_id"] == f"0x{disk.disk_id(built['img']):08x}"


def test_a_second_build_downloads_nothing(on_download, served):
    before = list(served.requests)
    again = build(on_download["out"], f"{served.url}/base.img.xz", on_download["sha256"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert served.requests == before


def test_a_wrong_checksum_is_refused_before_anything_is_built(served, tmp_path):
    out = tmp_path / "images"
    result = build(out, f"{served.url}/base.img.xz", "0" * 64)
    assert result.returncode == 2 and "sha256 is not" in result.stderr
    # no output: only the record of the build's steps, which says it failed
    record, = out.glob("*.steps.json")
    assert sorted(p.name for p in out.iterdir()) == sorted([record.name, folders.MARKER])
    assert json.loads(record.read_text())["outcome"] == "failed"


def test_a_zipped_base_unpacks_to_the_same_image(served, built, tmp_path):
    zipped = served.folder / "base.zip"
    src = image.Source(f"{served.url}/base.zip", export.sha256_of(zipped), "", "/boot/firmware")
    raw = image.obtain(src, src.sha256, tmp_path)
    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    assert digest == export.sha256_of(built["img"])


def test_the_image_built_on_the_downloaded_base_boots(on_download, tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    card = tmp_path / "card.img"
    flashed = subprocess.run([sys.executable, str(ROOT / "build.py"), "flash",
                              str(on_download["img"]), "--device", str(card), "--hostname",
                              "downloaded", "--user", "tester", "--ssh-key", f"{key}.pub"])
    assert flashed.returncode == 0
    serial = tmp_path / "serial.log"
    with qemu.booted(card, ssh_port=free_port(), serial_log=serial) as vm:
        try:
            vm.wait_for_ssh("tester", key, 900)
        except Exception:
            print(serial.read_text(errors="replace")[-5000:])
            raise
        result = vm.ssh("tester", key, "hostname; systemctl is-system-running --wait", timeout=600)
    assert result.stdout.split() == ["downloaded", "running"], result.stdout + result.stderr
