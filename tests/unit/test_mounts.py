"""Mounts under paths with spaces and other escaped characters are found and unmounted, nothing
is removed through a live mount, and a failing clean-up never hides the error that ran it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from clusterlab import cleanup, config, folders, mounts
from clusterlab.errors import BuildError, UserError

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a tmpfs on a path; every one is unmounted after the test, whatever happened."""
    made = []

    def mount(point):
        point.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-t", "tmpfs", "tmpfs", str(point)], check=True)
        made.append(point)
        return point

    if os.geteuid() != 0:
        pytest.fail("mounting needs root (sudo make test)")
    yield mount
    for point in reversed(made):
        subprocess.run(["umount", "--lazy", str(point)], capture_output=True)


def test_mount_points_with_escaped_characters_are_read_as_they_are(tmp_path, tmpfs):
    point = tmpfs(tmp_path / "a b\tc\\d" / "e")
    assert point in [p for _, p in mounts.table()]
    assert mounts.below(tmp_path) == [point]


def test_removing_a_folder_unmounts_what_is_below_it_first(tmp_path, tmpfs):
    host_file = tmp_path / "host" / "precious"
    host_file.parent.mkdir()
    host_file.write_text("not to be removed")
    inner = tmpfs(tmp_path / "out put" / "layer")
    (inner / "scratch").write_text("on the tmpfs")
    bind = tmp_path / "out put" / "bind of host"
    bind.mkdir()
    subprocess.run(["mount", "--bind", str(host_file.parent), str(bind)], check=True)
    mounts.remove_tree(tmp_path / "out put")
    assert not (tmp_path / "out put").exists()
    assert host_file.read_text() == "not to be removed"
    assert mounts.below(tmp_path) == []


def test_a_temporary_mount_point_is_never_emptied_while_mounted(tmp_path, tmpfs):
    busy = tmpfs(tmp_path / "busy")
    (busy / "data").write_text("still mounted")
    with pytest.raises(OSError):
        mounts.remove_mount_point(busy)  # rmdir: not removed, nor emptied
    assert (busy / "data").read_text() == "still mounted"


def test_a_failing_clean_up_is_kept_and_the_first_error_goes_on(tmp_path):
    cleanup.failures.clear()

    def failing_undo():
        raise BuildError("umount /x failed\n  | target is busy")

    with pytest.raises(UserError, match="the first error"):
        with cleanup.undone(failing_undo):
            raise UserError("the first error")
    assert cleanup.failures == ["umount /x failed | target is busy"]
    with pytest.raises(BuildError, match="umount /x failed"):  # with no error before, it is one
        with cleanup.undone(failing_undo):
            pass
    cleanup.failures.clear()


def test_clean_removes_only_folders_the_builder_made(tmp_path, tmpfs):
    cfg = config.load([], [f"image.output_dir={tmp_path}/theirs"])
    made = folders.make(tmp_path / "images")
    (made / "clusterlab.img").write_bytes(b"x" * 10)
    tmpfs(made / "left mounted")
    assert folders.remove(cfg, "image.output_dir", made) == 10 + len(folders.MARKER_TEXT)
    assert not made.exists() and mounts.below(tmp_path) == []
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    (theirs / "photo.jpg").write_text("keep")
    assert folders.make(theirs) == theirs  # the build may write into it, but never marks it
    refused = rf"^--set: image.output_dir: expected a folder the build made \(holding " \
              rf"{folders.MARKER}, not a mount point\), got {{}}: not removed"
    with pytest.raises(UserError, match=refused.format(theirs)):
        folders.remove(cfg, "image.output_dir", theirs)
    assert (theirs / "photo.jpg").read_text() == "keep"
    empty = tmp_path / "empty"
    empty.mkdir()
    folders.make(empty)  # an empty folder that exists is not adopted either
    with pytest.raises(UserError, match=refused.format(empty)):
        folders.remove(cfg, "image.output_dir", empty)
    stick = tmpfs(tmp_path / "usb stick")  # a mount point, even one with the marker in it
    (stick / folders.MARKER).write_text(folders.MARKER_TEXT)
    with pytest.raises(UserError, match=refused.format(stick)):
        folders.remove(cfg, "image.output_dir", stick)
    assert stick in mounts.below(tmp_path)
    assert folders.remove(cfg, "image.output_dir", tmp_path / "never made") is None


def test_build_py_clean_removes_the_output_folder_the_build_made(tmp_path, tmpfs):
    made = folders.make(tmp_path / "out")
    (made / "clusterlab-1.0-arm64.img").write_bytes(b"image")
    tmpfs(made / ".clusterlab-1.0-arm64.img.staging")  # as a killed build might leave it
    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "clean",
                             "--set", f"image.output_dir={made}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert f"removed {made}" in result.stderr
    assert not made.exists() and mounts.below(tmp_path) == []


def test_a_cache_in_use_by_a_build_is_not_cleaned(tmp_path):
    cache = tmp_path / "cache"
    with folders.in_use(cache):  # as a running build holds it
        result = subprocess.run([sys.executable, str(ROOT / "build.py"), "clean", "--cache",
                                 "--set", f"cache_dir={cache}",
                                 "--set", f"image.output_dir={tmp_path / 'out'}"],
                                capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr == f"error: {cache}: another build or clean is using this cache; " \
                            "wait for it to end\n"
    assert (cache / folders.MARKER).is_file()
