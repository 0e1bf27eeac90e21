"""The built image, inspected without booting it: outputs, partitions, files, units, secrets."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clusterlab import disk, pipeline

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def parts(built):
    return disk.partitions(built["img"])


@pytest.fixture(scope="module")
def root(built, parts):
    with disk.mounted_ext4(built["img"], parts[1]) as mountpoint:
        yield mountpoint


def fat(built, parts, name: str) -> str:
    return disk.fat_read(built["img"], parts[0], name).decode()


def test_outputs_are_named_by_version_and_complete(built):
    manifest = built["manifest"]
    assert built["xz"].name == f"clusterlab-{manifest['version']}-arm64.img.xz"
    version_file = (ROOT / "VERSION").read_text().strip()
    assert manifest["version"].startswith(version_file)
    assert not list(built["dir"].glob(".*partial"))
    check = subprocess.run(["sha256sum", "-c", built["sha256"].name], cwd=built["dir"],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr


def test_manifest_lists_packages_and_config(built):
    manifest = built["manifest"]
    packages = {p["name"]: p["version"] for p in manifest["packages"]}
    for name in ("linux-image-arm64", "raspi-firmware", "cloud-init", "docker.io", "openssh-server"):
        assert packages.get(name), f"{name} missing from the manifest"
    assert manifest["config"]["arch"] == "arm64"
    # what reproduces the build: the archive's state for each apt source, and the epoch
    sources = [entry["source"] for entry in manifest["archive"]]
    assert sources and all(s.startswith("deb http") for s in sources)
    assert all(re.match(r"\w{3}, \d{2} \w{3} \d{4} [\d:]{8} UTC$", entry["date"])
               for entry in manifest["archive"]), manifest["archive"]
    assert manifest["source_date_epoch"] > 0


def test_the_same_inputs_assemble_the_same_image(built, tmp_path):
    """Outputs elsewhere, so the image is assembled again from the cached layers: same bytes."""
    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "build",
                             "--set", f"image.output_dir={tmp_path}",
                             "--set", "image.compression=zstd"],
                            cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    again = json.loads(next(tmp_path.glob("*.manifest.json")).read_text())
    assert again["image"]["sha256"] == built["manifest"]["image"]["sha256"]


def test_bmap_copies_the_compressed_image_to_the_raw_bytes(built, tmp_path):
    copy = tmp_path / "card.img"
    subprocess.run(["bmaptool", "copy", "--bmap", str(built["bmap"]), str(built["xz"]), str(copy)],
                   check=True, capture_output=True)
    assert subprocess.run(["cmp", str(copy), str(built["img"])]).returncode == 0


def test_partition_table_labels_and_file_systems(built, parts):
    boot, rootfs = parts
    assert (boot.type, rootfs.type) == ("c", "83")
    assert boot.start % disk.ALIGN == 0 and rootfs.start % disk.ALIGN == 0
    info = subprocess.run(["minfo", "-i", f"{built['img']}@@{boot.start}", "::"],
                          env={"MTOOLS_SKIP_CHECK": "1"}, capture_output=True, text=True).stdout
    assert re.search(r'disk label="CL_BOOT', info) and re.search(r'disk type="FAT32', info), info
    serial = re.search(r"serial number: (\w+)", info).group(1).lower()
    assert serial == built["manifest"]["image"]["boot_volume_id"][2:]
    with disk.loop_attached(built["img"], rootfs) as device:
        probe = subprocess.run(["blkid", "-p", "-o", "export", str(device)],
                               capture_output=True, text=True).stdout
    assert "TYPE=ext4" in probe and "LABEL=CL_ROOT" in probe


def test_boot_files_agree_with_fstab_and_partitions(built, parts, root):
    cmdline = fat(built, parts, "cmdline.txt").split()
    assert "root=LABEL=CL_ROOT" in cmdline
    config_txt = dict(line.split("=", 1) for line in fat(built, parts, "config.txt").splitlines()
                      if "=" in line and not line.startswith("#"))
    names = disk.fat_list(built["img"], parts[0])
    assert config_txt["kernel"] in names
    initramfs = re.search(r"^initramfs (\S+)", fat(built, parts, "config.txt"), re.M).group(1)
    assert initramfs in names
    assert any(n.startswith("bcm2711-rpi-4") for n in names), "Pi 4 device tree missing"
    assert "gpu_mem=16" in fat(built, parts, "config.txt")
    fstab = [l.split() for l in (root / "etc/fstab").read_text().splitlines()
             if l.strip() and not l.startswith("#")]
    assert ["LABEL=CL_ROOT", "/", "ext4"] == fstab[0][:3]
    assert ["LABEL=CL_BOOT", "/boot/firmware", "vfat"] == fstab[1][:3]
    assert not list((root / "boot/firmware").iterdir()), "FAT content left in the root fs"


def test_cloud_init_seed_on_the_boot_partition(built, parts, root):
    user_data = fat(built, parts, "user-data")
    assert user_data.startswith("#cloud-config")
    assert yaml.safe_load(user_data)["users"] == []
    assert yaml.safe_load(fat(built, parts, "meta-data"))["local-hostname"] == "clusterlab"
    assert yaml.safe_load(fat(built, parts, "network-config"))["version"] == 2
    cfg = yaml.safe_load((root / "etc/cloud/cloud.cfg.d/05_clusterlab.cfg").read_text())
    assert cfg["datasource"]["NoCloud"]["seedfrom"] == "file:///boot/firmware/"


@pytest.mark.parametrize("unit", ["ssh.service", "docker.service", "systemd-networkd.service",
                                  "systemd-resolved.service", "systemd-timesyncd.service",
                                  "clusterlab-images.service"])
def test_units_enabled(root, unit):
    # links point to /usr/lib/…, which resolve on the host: list them, do not follow them
    wants = [p for p in root.glob("etc/systemd/system/*.wants/*") if p.name == unit]
    assert wants, f"{unit} is not enabled"


def test_our_units_pass_systemd_analyze_verify(root):
    """Our units, and the packaged units we add drop-ins to, checked in the image's own tree
    (where their programs and the units they name exist). Errors in units we only depend on
    are the host systemd's business (it may be older than the image's)."""
    overlays = [stage.overlay for stage in pipeline.Project(ROOT).stages
                if stage.overlay and not stage.skip]
    ours = sorted({p.parent.name.removesuffix(".d") if p.suffix == ".conf" else p.name
                   for overlay in overlays for p in overlay.glob("etc/systemd/system/**/*")
                   if p.is_file()})
    assert "clusterlab-images.service" in ours and "ssh.service" in ours
    paths = [next(f"/{folder}/{unit}" for folder in ("etc/systemd/system", "usr/lib/systemd/system",
                                                     "lib/systemd/system")
                  if (root / folder / unit).is_file())
             for unit in ours]
    result = subprocess.run(["systemd-analyze", "verify", "--man=no", "--recursive-errors=no",
                             f"--root={root}", *paths], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_cloud_init_enabled(root):
    wanted = [p.name for p in root.glob("etc/systemd/system/cloud-init.target.wants/*")]
    assert "cloud-init-local.service" in wanted and "cloud-init-network.service" in wanted


def test_no_password_no_host_keys_no_machine_id(root):
    for line in (root / "etc/shadow").read_text().splitlines():
        name, hashed = line.split(":")[:2]
        assert hashed in ("*", "!", "!*", ""), f"{name} has a password hash"
        assert hashed != "" or name not in ("root",), "root has an empty password"
    assert not list((root / "etc/ssh").glob("ssh_host_*"))
    assert (root / "etc/machine-id").read_text() == ""
    sshd = (root / "etc/ssh/sshd_config.d/10-clusterlab.conf").read_text()
    assert "PasswordAuthentication no" in sshd


def test_no_build_leftovers(root):
    assert not (root / "usr/sbin/policy-rc.d").exists()
    assert not (root / "etc/dpkg/dpkg.cfg.d/clusterlab-build").exists()
    assert not list(root.glob("usr/sbin/update-initramfs.clusterlab"))
    resolv = root / "etc/resolv.conf"
    assert resolv.is_symlink() and "systemd/resolve" in os.readlink(resolv), "build host's DNS left"
    assert not list((root / "var/cache/apt/archives").glob("*.deb"))
    assert (root / "usr/bin/py3compile").exists()


def test_every_python_source_has_byte_code_checked_by_its_hash(root):
    """Compiled at build time, valid by content: the image's file times (SOURCE_DATE_EPOCH) do
    not make it stale, so a node never compiles (test_boot shows none is written)."""
    library, = root.glob("usr/lib/python3.*")  # the image's interpreter, e.g. python3.13
    tag = "cpython-" + library.name.removeprefix("python").replace(".", "")
    sources = [s for folder in (library, root / "usr/lib/python3/dist-packages")
               for s in folder.rglob("*.py")]
    assert len(sources) > 1000  # the standard library, cloud-init, the agent
    lacking = []
    for source in sources:
        pyc = source.parent / "__pycache__" / f"{source.stem}.{tag}.pyc"
        # PEP 552 header: magic, flags (0b11: hash-based, checked), source hash
        if not pyc.exists() or int.from_bytes(pyc.read_bytes()[4:8], "little") != 0b11:
            lacking.append(str(source.relative_to(root)))
    assert not lacking, f"{len(lacking)} without checked byte-code, e.g. {lacking[:5]}"


def test_only_raspberry_pi_device_trees_are_kept(root):
    trees = [p.relative_to(root) for p in root.glob("usr/lib/linux-image-*/**/*.dtb")]
    assert trees and all(p.name.startswith("bcm2") for p in trees), trees[:10]
    assert any(p.name.startswith("bcm2711-rpi-4") for p in trees)
