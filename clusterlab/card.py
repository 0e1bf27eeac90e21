"""Per-card settings on the FAT boot partition: hostname and login key, edited as YAML.

The seed files are parsed and dumped, never edited as text, so comments in them are lost but the
result is always valid cloud-config.
"""

from pathlib import Path

import yaml

from . import disk
from .errors import UserError


def personalize(image: Path, hostname: str | None = None, user: str | None = None,
                ssh_key: str | None = None) -> None:
    """Set this card's hostname and/or add a passwordless-sudo user who logs in with ssh_key."""
    boot = disk.partitions(image)[0]
    if hostname:
        meta = _load(image, boot, "meta-data")
        meta["local-hostname"] = hostname
        disk.fat_write(image, boot, "meta-data", yaml.safe_dump(meta, sort_keys=False).encode())
    if user and ssh_key:
        user_data = _load(image, boot, "user-data")
        user_data["users"] = [*(user_data.get("users") or []), {
            "name": user, "groups": ["sudo", "docker"], "shell": "/bin/bash",
            "sudo": "ALL=(ALL) NOPASSWD:ALL", "lock_passwd": True,
            "ssh_authorized_keys": [ssh_key.strip()]}]
        text = "#cloud-config\n" + yaml.safe_dump(user_data, sort_keys=False)
        disk.fat_write(image, boot, "user-data", text.encode())


def _load(image: Path, boot: disk.Partition, name: str) -> dict:
    try:
        data = yaml.safe_load(disk.fat_read(image, boot, name)) or {}
    except yaml.YAMLError as e:
        raise UserError(f"{image}: {name} on the boot partition is not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise UserError(f"{image}: {name} on the boot partition is not a YAML mapping")
    return data
