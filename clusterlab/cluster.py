"""The card's cluster settings (clusterlab.yaml on the boot partition), made from the build config
and checked with the node agent's own parser when the config is loaded: a build refuses what a
card would refuse, with the file and key the user wrote."""

import base64
import hashlib
from typing import Any

from clusterlab_node import settings as schema

from .config import Config, describe
from .errors import UserError

# the build settings the card's settings come from, where not `cluster.<key>`
FROM_BUILD = {"default_hostname": "hostname", "images": "containers"}
# settings whose rules are checked together: a mistake is in whichever was given last
TOGETHER = [("subnet", "master_address", "dhcp_range", "probe_range")]


def build_key(card_key: str) -> str:
    return FROM_BUILD.get(card_key, f"cluster.{card_key}")


def document(config: Config, image_version: str) -> dict[str, Any]:
    """clusterlab.yaml's settings, in the schema's order."""
    containers = config["containers"]
    given = {"gossip_key": config["cluster.gossip_key"] or derived_gossip_key(image_version,
                                                                               config["arch"]),
             "default_hostname": config["hostname"],
             "images": {name: containers[name]["tag"] for name in schema.IMAGES
                        if name in containers}}
    return {field.key: given[field.key] if field.key in given else config[build_key(field.key)]
            for field in schema.FIELDS}


def check(config: Config, image_version: str) -> None:
    """Raise UserError naming the setting, and the file or --set that gave it, when the card's
    settings would be refused."""
    missing = [name for name in schema.IMAGES if name not in config["containers"]]
    if missing:
        raise UserError(f"{config.last_source(['containers'])}: containers: expected an image "
                        f"named {missing[0]} ({schema.IMAGES[missing[0]]}), got none")
    try:
        schema.parse(document(config, image_version), "clusterlab.yaml")
    except schema.SettingsError as e:
        involved = next((keys for keys in TOGETHER if e.key in keys), (e.key,))
        source = config.last_source([build_key(key) for key in involved])
        raise UserError(f"{source}: {build_key(e.key)}: expected {e.expected}, "
                        f"got {describe(e.got)}") from None


def derived_gossip_key(image_version: str, arch: str) -> str:
    """The same for every card of a build (the nodes must share it) and for a rebuild."""
    seed = hashlib.sha256(f"clusterlab gossip {image_version} {arch}".encode()).digest()
    return base64.b64encode(seed).decode()
