"""`build.py flash`: the built image written onto a loop device and into files, verified, with
per-card settings; damaged images and unsafe targets refused."""

import contextlib
import hashlib
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clusterlab import disk, flash
from clusterlab.errors import UserError

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def run_flash(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "build.py"), "flash", *map(str, args)],
                          capture_output=True, text=True)


def flashed(result: subprocess.CompletedProcess) -> None:
    assert result.returncode == 0, result.stderr


def written_mib(sparse: Path) -> int:
    """What was written into a file that started empty and sparse: its allocated blocks."""
    return sparse.stat().st_blocks * 512 // 2**20


def sha256_range(path: Path, start: int, size: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        f.seek(start)
        while size:
            chunk = f.read(min(size, 4 << 20))
            digest.update(chunk)
            size -= len(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def loop_device(backing: Path):
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], check=True,
                            capture_output=True, text=True).stdout.strip()
    try:
        yield Path(device)
    finally:
        subprocess.run(["losetup", "--detach", device], check=True)


@pytest.fixture(scope="module")
def key(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("key") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path.with_suffix(".pub")


def test_onto_a_loop_device_only_mapped_blocks_are_written_and_the_card_is_personal(
        built, tmp_path, key):
    backing = tmp_path / "card"
    subprocess.run(["truncate", "--size", "3G", str(backing)], check=True)
    with loop_device(backing) as device:
        result = run_flash(built["xz"], "--device", device, "--hostname", "node7",
                           "--ssh-key", key, "--yes")
        flashed(result)
        boot, root = disk.partitions(device)
        meta = yaml.safe_load(disk.fat_read(device, boot, "meta-data"))
        user_data = yaml.safe_load(disk.fat_read(device, boot, "user-data"))
        card_root = sha256_range(device, root.start, root.size)
    # the image is about half empty blocks (the card's settings add a few KiB)
    assert written_mib(backing) < built["img"].stat().st_size // 2**20 * 0.75
    assert meta["local-hostname"] == "node7"
    pi, = user_data["users"]
    assert pi["name"] == "pi" and pi["ssh_authorized_keys"] == [key.read_text().strip()]
    # the root partition is the image's, byte for byte
    assert card_root == sha256_range(built["img"], root.start, root.size)


def test_into_a_file_without_a_bmap_every_byte_is_written_and_read_back(built, tmp_path):
    image = tmp_path / built["xz"].name
    os.link(built["xz"], image)
    os.link(built["sha256"], tmp_path / built["sha256"].name)  # no .bmap beside it
    target = tmp_path / "card.img"
    flashed(run_flash(image, "--device", target))
    assert written_mib(target) == target.stat().st_size // 2**20 == \
        built["img"].stat().st_size // 2**20
    assert sha256_range(target, 0, target.stat().st_size) == \
        sha256_range(built["img"], 0, built["img"].stat().st_size)


def test_a_damaged_image_is_caught_by_the_block_map_checksums(built, tmp_path):
    image = tmp_path / built["img"].name
    subprocess.run(["cp", "--sparse=always", str(built["img"]), str(image)], check=True)
    (tmp_path / built["bmap"].name).write_bytes(built["bmap"].read_bytes())
    root = disk.partitions(image)[1]
    with open(image, "r+b") as f:  # one flipped byte in the root file system's superblock
        f.seek(root.start + 1024 + 100)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    result = run_flash(image, "--device", tmp_path / "card.img")
    assert result.returncode == 1
    assert "do not match its block map" in result.stderr


@pytest.mark.parametrize("damage, refusal", [
    # a byte of the compressed data: the stream still looks whole, its .sha256 tells
    ("middle", "does not match its .sha256"),
    # the end, where xz keeps its index: found before the image is read through
    ("end", "xz cannot read whole"),
])
def test_a_damaged_compressed_image_without_bmap_is_refused_before_writing(built, tmp_path,
                                                                            damage, refusal):
    data = bytearray(built["xz"].read_bytes())
    if damage == "middle":
        data[len(data) * 3 // 4] ^= 0xFF
    else:
        data[-4096:] = bytes(4096)
    image = tmp_path / built["xz"].name
    image.write_bytes(data)
    (tmp_path / built["sha256"].name).write_bytes(built["sha256"].read_bytes())
    result = run_flash(image, "--device", tmp_path / "card.img")
    assert result.returncode == 2 and refusal in result.stderr, result.stderr
    assert not (tmp_path / "card.img").exists()


def test_a_mounted_card_and_its_backing_file_are_refused(tmp_path, built):
    backing = tmp_path / "fs"
    subprocess.run(["truncate", "--size", "64M", str(backing)], check=True)
    subprocess.run(["mkfs.ext4", "-q", str(backing)], check=True)
    mountpoint = tmp_path / "mnt"
    mountpoint.mkdir()
    with loop_device(backing) as device:
        subprocess.run(["mount", str(device), str(mountpoint)], check=True)
        try:
            (mountpoint / "kept").write_text("still here")
            for target in (device, backing):
                result = run_flash(built["xz"], "--device", target, "--yes")
                assert result.returncode == 2 and "mounted" in result.stderr, result.stderr
            assert (mountpoint / "kept").read_text() == "still here"
        finally:
            subprocess.run(["umount", str(mountpoint)], check=True)


def root_device() -> Path | None:
    """The block device node of this machine's root file system, found by device number."""
    number = os.stat("/").st_dev
    for node in Path("/dev").iterdir():
        with contextlib.suppress(OSError):
            if stat.S_ISBLK(node.stat().st_mode) and node.stat().st_rdev == number:
                return node
    return None


def test_the_running_systems_disk_and_non_devices_are_refused(built):
    device = root_device()
    if device is None:
        pytest.skip("this machine's root is not on a block device")
    # asked of the checks alone: a mistake here must not be able to write to the disk
    with pytest.raises(UserError, match="holds the running system's root"):
        flash.inspect_target(device)
    result = run_flash(built["xz"], "--device", "/", "--yes")
    assert result.returncode == 2 and "not a block device or a regular file" in result.stderr


def test_bad_per_card_inputs_stop_before_anything_is_written(built, tmp_path, key):
    target = tmp_path / "card.img"
    not_cloud_config = tmp_path / "user-data"
    not_cloud_config.write_text("users: []\n")
    private = key.with_suffix("")
    for args, message in [(("--user-data", not_cloud_config), "#cloud-config"),
                          (("--ssh-key", private), "public key"),
                          (("--hostname", "Node_1"), "--hostname")]:
        result = run_flash(built["xz"], "--device", target, *args)
        assert result.returncode == 2 and message in result.stderr, result.stderr
        assert not target.exists()


def test_a_user_data_file_replaces_the_images(built, tmp_path):
    user_data = tmp_path / "user-data"
    user_data.write_text("#cloud-config\n# mine\nusers:\n  - name: alice\n    lock_passwd: true\n")
    target = tmp_path / "card.img"
    flashed(run_flash(built["xz"], "--device", target, "--user-data", user_data))
    boot = disk.partitions(target)[0]
    assert disk.fat_read(target, boot, "user-data").decode() == user_data.read_text()
