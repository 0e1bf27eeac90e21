"""Per-card settings on the FAT boot partition: hostname and login key, edited as YAML.

The seed files are parsed and dumped, never edited as text, so comments in them are lost but the
result is always valid cloud-config.
"""

from collections.abc import Callable
from pathlib import Path

import yaml

from . import disk, yamlfile
from .errors import UserError

# cloud-init's seed files on the boot partition that hold a card's own settings
SEED_FILES = ("meta-data", "user-data")


def personalize(image: Path, hostname: str | None = None, user: str | None = None,
                ssh_key: str | None = None) -> None:
    """Set this card's hostname and/or add a passwordless-sudo user who logs in with ssh_key."""
    if hostname:
        edit(image, "meta-data", lambda meta: meta.update({"local-hostname": hostname}))
    if user and ssh_key:
        login = {"name": user, "groups": ["sudo", "docker"], "shell": "/bin/bash",
                 "sudo": "ALL=(ALL) NOPASSWD:ALL", "lock_passwd": True,
                 "ssh_authorized_keys": [ssh_key.strip()]}
        edit(image, "user-data",
             lambda data: data.update(users=[*(data.get("users") or []), login]))


def edit(image: Path, name: str, change: Callable[[dict], None]) -> None:
    """Apply change to the seed file name (parsed as a mapping) and write it back."""
    boot = disk.partitions(image)[0]
    data = _load(image, boot, name)
    change(data)
    # cloud-init reads user-data as cloud-config only behind its header line
    header = "#cloud-config\n" if name == "user-data" else ""
    text = header + yaml.safe_dump(data, sort_keys=False)
    disk.fat_write(image, boot, name, text.encode())


def _load(image: Path, boot: disk.Partition, name: str) -> dict:
    data = yamlfile.load(disk.fat_read(image, boot, name),
                         f"{image}: {name} on the boot partition") or {}
    if not isinstance(data, dict):
        raise UserError(f"{image}: {name} on the boot partition: expected a YAML mapping, got "
                        f"{type(data).__name__}")
    return data
