"""The node's cluster settings: clusterlab.yaml on the boot partition, rendered at build time from the
build config and editable on the card. Read and checked once, with errors that name the key."""

import dataclasses
import ipaddress
import re
from pathlib import Path

import yaml

# Debian and newer Raspberry Pi OS mount the boot partition at /boot/firmware, HypriotOS and
# older Raspberry Pi OS at /boot
PLACES = (Path("/boot/firmware/clusterlab.yaml"), Path("/boot/clusterlab.yaml"))


# the build's rule for its `hostname` setting, which becomes default_hostname
HOSTNAME = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"


class SettingsError(ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class Settings:
    cluster: str  # name of the cluster: nodes join only a master announcing the same name
    interface: str  # the wired NIC the VLAN is put on; empty: the first one found
    vlan_id: int
    subnet: ipaddress.IPv4Network
    master_address: ipaddress.IPv4Address
    dhcp_range: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]
    probe_range: tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]
    discovery_timeout: int  # seconds spent listening for a master before claiming the role
    gossip_key: str  # Consul's gossip encryption key, the same on every node
    default_hostname: str  # the host name the image gives every card that is not given its own

    @property
    def vlan_interface(self) -> str:
        # not NIC.ID: predictable NIC names (enxb827eb012345) would pass the 15-character limit
        return f"vlan{self.vlan_id}"


DEFAULTS = {"cluster": "clusterlab", "interface": "", "vlan_id": 200,
            "subnet": "192.168.200.0/24", "master_address": None,
            "dhcp_range": "192.168.200.20-192.168.200.200",
            "probe_range": "192.168.200.240-192.168.200.250", "discovery_timeout": 15,
            "gossip_key": None, "default_hostname": "clusterlab"}


def default_path() -> Path:
    return next((place for place in PLACES if place.exists()), PLACES[0])


def load(path: Path) -> Settings:
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise SettingsError(f"{path}: cannot read it: {e}") from None
    if not isinstance(document, dict):
        raise SettingsError(f"{path}: expected a mapping of settings")
    return parse(document, str(path))


def parse(document: dict, source: str = "settings") -> Settings:
    unknown = sorted(set(document) - set(DEFAULTS))
    if unknown:
        raise SettingsError(f"{source}: {unknown[0]}: unknown setting; known: "
                            + ", ".join(DEFAULTS))
    values = {**DEFAULTS, **document}

    def fail(key: str, expected: str) -> SettingsError:
        return SettingsError(f"{source}: {key}: expected {expected}, got {values[key]!r}")

    if not isinstance(values["cluster"], str) or not re.fullmatch(r"[a-z0-9-]{1,40}",
                                                                  values["cluster"]):
        raise fail("cluster", "a name of lower-case letters, digits and '-'")
    if not isinstance(values["interface"], str) or not re.fullmatch(r"[a-z0-9]{0,15}",
                                                                    values["interface"]):
        raise fail("interface", "a network interface name such as eth0, or empty")
    vlan_id = values["vlan_id"]
    if isinstance(vlan_id, bool) or not isinstance(vlan_id, int) or not 1 <= vlan_id <= 4094:
        raise fail("vlan_id", "a VLAN id from 1 to 4094")
    try:
        subnet = ipaddress.IPv4Network(str(values["subnet"]))
    except ValueError:
        raise fail("subnet", "an IPv4 network such as 192.168.200.0/24") from None
    if subnet.num_addresses < 16:
        raise fail("subnet", "a network of at least 16 addresses")
    master = _address(values, "master_address", subnet, fail) if values["master_address"] \
        else next(subnet.hosts())
    dhcp = _range(values, "dhcp_range", subnet, fail)
    probe = _range(values, "probe_range", subnet, fail)
    if _overlap(dhcp, probe) or any(low <= master <= high for low, high in (dhcp, probe)):
        raise fail("probe_range", "master address, DHCP range and probe range apart")
    timeout = values["discovery_timeout"]
    if isinstance(timeout, bool) or not isinstance(timeout, int) or not 3 <= timeout <= 600:
        raise fail("discovery_timeout", "seconds from 3 to 600")
    key = values["gossip_key"]
    if not isinstance(key, str) or not re.fullmatch(r"[A-Za-z0-9+/]{43}=", key):
        raise fail("gossip_key", "base64 of 32 bytes (the build writes one)")
    hostname = values["default_hostname"]
    if not isinstance(hostname, str) or not re.fullmatch(HOSTNAME, hostname):
        raise fail("default_hostname", "a host name (lower-case letters, digits, '-')")
    return Settings(values["cluster"], values["interface"], vlan_id, subnet, master, dhcp,
                    probe, timeout, key, hostname)


def _address(values: dict, key: str, subnet, fail) -> ipaddress.IPv4Address:
    try:
        address = ipaddress.IPv4Address(str(values[key]))
    except ValueError:
        raise fail(key, "an IPv4 address") from None
    if address not in subnet or address in (subnet.network_address, subnet.broadcast_address):
        raise fail(key, f"a host address in {subnet}")
    return address


def _range(values: dict, key: str, subnet, fail):
    text = values[key]
    low_text, dash, high_text = str(text).partition("-")
    try:
        low, high = ipaddress.IPv4Address(low_text.strip()), ipaddress.IPv4Address(high_text.strip())
    except ValueError:
        raise fail(key, "FIRST-LAST, two addresses of the subnet") from None
    if not dash or low > high or not all(
            a in subnet and a not in (subnet.network_address, subnet.broadcast_address)
            for a in (low, high)):
        raise fail(key, f"FIRST-LAST with FIRST <= LAST, host addresses in {subnet}")
    return low, high


def _overlap(a, b) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]
