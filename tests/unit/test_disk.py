"""File systems made from trees are byte-identical for identical trees, whenever they are made.
Uses the real mke2fs, debugfs and mtools on small image files (no root needed)."""

import os
import subprocess
import time
from pathlib import Path

import pytest

from clusterlab import disk
from clusterlab import tree as tree_module

EPOCH = 1_700_000_000
IDENT = disk.Identity(0x1234ABCD, 0x5678EF01, "0a938493-5616-4277-8873-ae4b01d4effd", EPOCH)
ROOT_PART = disk.Partition(2, 4 * disk.MIB, 32 * disk.MIB, "83")


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "tree"
    (root / "etc/sub").mkdir(parents=True)
    (root / "etc/hostname").write_text("node\n")
    (root / "etc/sub/file").write_text("x" * 10000)
    os.link(root / "etc/hostname", root / "etc/sub/hardlink")
    (root / "etc/link").symlink_to("hostname")
    return root


def make_ext4(tree: Path, image: Path) -> bytes:
    image.unlink(missing_ok=True)
    disk._make_ext4(image, ROOT_PART, tree, IDENT)
    return image.read_bytes()


def inode_times(image: Path, path: str) -> dict[str, str]:
    stat = subprocess.run(["debugfs", "-R", f"stat {path}", f"{image}?offset={ROOT_PART.start}"],
                          capture_output=True, text=True, check=True).stdout
    return {line.split(":")[0].strip(): line.split()[1]
            for line in stat.splitlines()
            if line.strip().split(":")[0] in ("atime", "ctime", "mtime")}


def test_ext4_is_the_same_when_the_tree_was_touched_in_between(tree, tmp_path):
    image = tmp_path / "disk.img"
    first = make_ext4(tree, image)
    time.sleep(1.1)
    for path in tree.rglob("*"):  # new times, as a later build's tree has
        if not path.is_symlink():
            os.chmod(path, path.stat().st_mode)
            os.utime(path)
        if path.is_file():
            path.read_bytes()
    assert make_ext4(tree, image) == first


def test_every_inode_gets_the_epoch_as_its_times(tree, tmp_path):
    image = tmp_path / "disk.img"
    make_ext4(tree, image)
    epoch_hex = f"0x{EPOCH:08x}:00000000"
    for path in ("/", "/etc", "/etc/hostname", "/etc/sub/file", "/etc/link"):
        assert inode_times(image, path) == dict.fromkeys(("atime", "ctime", "mtime"),
                                                         epoch_hex), path
    check = subprocess.run(["e2fsck", "-fn", f"{image}?offset={ROOT_PART.start}"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_a_failing_debugfs_command_is_an_error(tree, tmp_path):
    image = tmp_path / "disk.img"
    make_ext4(tree, image)
    with pytest.raises(disk.BuildError, match="invalid field specifier"):
        disk.debugfs(f"{image}?offset={ROOT_PART.start}", "sif <12> nonsense 1\n", EPOCH)


def test_fat_is_the_same_when_made_again_later(tree, tmp_path):
    boot = disk.Partition(1, 4 * disk.MIB, 64 * disk.MIB, "c")
    image = tmp_path / "boot.img"
    images = []
    tree_module.set_mtimes(tree, EPOCH)  # as the build does for the boot partition's files
    for _ in range(2):
        image.unlink(missing_ok=True)
        image.write_bytes(b"")
        os.truncate(image, boot.start + boot.size)
        disk._make_fat(image, boot, tree, IDENT)
        images.append(image.read_bytes())
        time.sleep(2.1)  # FAT times have a resolution of two seconds
    assert images[0] == images[1]
    assert disk.fat_read(image, boot, "etc/sub/file") == b"x" * 10000
