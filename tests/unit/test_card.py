"""Per-card settings edited on a real FAT boot partition (sfdisk, mkfs.vfat, mtools; no root)."""

from pathlib import Path

import pytest
import yaml

from clusterlab import card, disk
from clusterlab.errors import UserError

IDENT = disk.Identity(0x1234ABCD, 0x5678EF01, "0a938493-5616-4277-8873-ae4b01d4effd",
                      1_700_000_000)
BOOT = disk.Partition(1, disk.ALIGN, 64 * disk.MIB, "c")


@pytest.fixture
def image(tmp_path) -> Path:
    """A card whose boot partition holds seed files like the built image's."""
    seed = tmp_path / "boot"
    seed.mkdir()
    (seed / "meta-data").write_text("instance-id: clusterlab\nlocal-hostname: clusterlab\n")
    (seed / "user-data").write_text("#cloud-config\n# a comment\nusers:\n  - default\n")
    (seed / "network-config").write_text("version: 2\nethernets:\n  eth0:\n    dhcp4: true\n")
    (seed / "broken").write_text("key: [unclosed\n")
    (seed / "list").write_text("- a\n- b\n")
    image = tmp_path / "card.img"
    with open(image, "wb") as f:
        f.truncate(BOOT.start + BOOT.size)
    disk._write_partition_table(image, IDENT.disk_id, [BOOT])
    disk._make_fat(image, BOOT, seed, IDENT)
    return image


def seed(image: Path, name: str) -> str:
    return disk.fat_read(image, BOOT, name).decode()


def test_personalize_sets_the_hostname_and_adds_a_key_only_user(image):
    card.personalize(image, hostname="node7", user="pi", ssh_key="ssh-ed25519 AAAA key\n")
    assert yaml.safe_load(seed(image, "meta-data")) == {"instance-id": "clusterlab",
                                                        "local-hostname": "node7"}
    user_data = seed(image, "user-data")
    assert user_data.startswith("#cloud-config\n")
    users = yaml.safe_load(user_data)["users"]
    assert users[0] == "default"
    assert users[1]["name"] == "pi" and users[1]["lock_passwd"] is True
    assert users[1]["ssh_authorized_keys"] == ["ssh-ed25519 AAAA key"]
    assert "passwd" not in users[1]


def test_personalize_without_a_key_adds_no_user(image):
    before = seed(image, "user-data")
    card.personalize(image, hostname="node8", user="pi", ssh_key=None)
    assert seed(image, "user-data") == before


def test_edit_writes_other_seed_files_without_the_cloud_config_header(image):
    card.edit(image, "network-config",
              lambda network: network["ethernets"].update(eth1={"dhcp4": True}))
    text = seed(image, "network-config")
    assert not text.startswith("#")
    assert yaml.safe_load(text)["ethernets"] == {"eth0": {"dhcp4": True},
                                                 "eth1": {"dhcp4": True}}


@pytest.mark.parametrize("name, problem", [("broken", "not valid YAML"),
                                           ("list", "expected a YAML mapping")])
def test_a_seed_file_that_is_not_a_mapping_is_refused_by_name(image, name, problem):
    before = seed(image, name)
    with pytest.raises(UserError, match=f"{name} on the boot partition: {problem}"):
        card.edit(image, name, lambda data: None)
    assert seed(image, name) == before
