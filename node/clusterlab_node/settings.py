"""The cluster's settings, declared once: name, default, documentation and rules.

On the node they are clusterlab.yaml on the boot partition, rendered at build time and editable
on the card. The builder declares its `cluster` settings from FIELDS and checks the card's
document with `parse` before it builds, so a build refuses what a card would refuse.
"""

import dataclasses
import ipaddress
import re
from pathlib import Path
from typing import Any, Callable

import yaml

# Debian and newer Raspberry Pi OS mount the boot partition at /boot/firmware, HypriotOS and
# older Raspberry Pi OS at /boot
PLACES = (Path("/boot/firmware/clusterlab.yaml"), Path("/boot/clusterlab.yaml"))

HOSTNAME = r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?"
# the name:tag an image carries on the node (a tag is required: `latest` is never implied)
TAG = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"
IMAGE_TAG = rf"[a-z0-9]+([._-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*:{TAG}"
# the container images the node runs, by their name in the build's `containers`
IMAGES = {"consul": "the agent's Consul", "haproxy": "the load-balancing demo",
          "web": "both demos' web server"}
REQUIRED = None  # the default of a setting the build always writes onto the card


class SettingsError(ValueError):
    """A setting is wrong: where, which, what was expected and what was found."""

    def __init__(self, source: str, key: str, expected: str, got: Any):
        super().__init__(f"{source}: {key}: expected {expected}, got {got!r}")
        self.source, self.key, self.expected, self.got = source, key, expected, got


class Invalid(ValueError):
    """A value breaks its setting's rule; the argument says what was expected."""


@dataclasses.dataclass(frozen=True)
class Field:
    key: str  # in clusterlab.yaml; `cluster.<key>` in the build config
    default: Any  # REQUIRED: the build writes it
    doc: str
    parse: Callable[[Any], Any]  # the value as the agent uses it; raises Invalid
    # whether the build config has it as `cluster.<key>` (the others come from other settings)
    in_build: bool = True

    def problem(self, value: Any) -> str | None:
        """What was expected, when value breaks this setting's own rule."""
        try:
            self.parse(value)
        except Invalid as e:
            return str(e)
        return None


def _text(pattern: str, expected: str) -> Callable[[Any], str]:
    def parse(value):
        if not isinstance(value, str) or not re.fullmatch(pattern, value):
            raise Invalid(expected)
        return value
    return parse


def _integer(low: int, high: int, unit: str = "an integer") -> Callable[[Any], int]:
    def parse(value):
        # bool is an int in Python; a YAML "yes" must not pass as a number
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise Invalid(f"{unit} from {low} to {high}")
        return value
    return parse


def _subnet(value) -> ipaddress.IPv4Network:
    try:
        subnet = ipaddress.IPv4Network(value) if isinstance(value, str) else None
    except ValueError:  # also for host bits set: 192.168.200.7/24
        subnet = None
    if subnet is None or subnet.num_addresses < 16:
        raise Invalid("an IPv4 network of at least 16 addresses, without host bits set, "
                      "such as 192.168.200.0/24")
    return subnet


def _address_or_empty(value) -> ipaddress.IPv4Address | None:
    if value == "":
        return None
    try:
        if isinstance(value, str):
            return ipaddress.IPv4Address(value)
    except ValueError:
        pass
    raise Invalid("an IPv4 address, or empty")


AddressRange = tuple[ipaddress.IPv4Address, ipaddress.IPv4Address]


def _range(value) -> AddressRange:
    expected = "FIRST-LAST, two IPv4 addresses with FIRST <= LAST"
    if not isinstance(value, str):
        raise Invalid(expected)
    low_text, dash, high_text = value.partition("-")
    try:
        low, high = ipaddress.IPv4Address(low_text.strip()), ipaddress.IPv4Address(high_text.strip())
    except ValueError:
        raise Invalid(expected) from None
    if not dash or low > high:
        raise Invalid(expected)
    return low, high


def _images(value) -> dict[str, str]:
    expected = ("the tag of each image the cluster runs: "
                + ", ".join(f"{name} ({why})" for name, why in IMAGES.items()))
    if not isinstance(value, dict) or set(value) != set(IMAGES) or not all(
            isinstance(tag, str) and re.fullmatch(IMAGE_TAG, tag) for tag in value.values()):
        raise Invalid(expected)
    return dict(value)


FIELDS = (
    Field("name", "clusterlab",
          "Name of the cluster: a node joins only a master that announces the same name.",
          _text(r"[a-z0-9-]{1,40}", "a name of 1 to 40 lower-case letters, digits and '-'")),
    Field("interface", "",
          "The wired port the cluster's VLAN is put on, such as eth0; empty for the first one "
          "found.",
          _text(r"[a-z0-9]{0,15}", "a network interface name such as eth0, or empty")),
    Field("vlan_id", 200,
          "802.1Q VLAN id on the wired port that keeps the cluster's traffic off the LAN.",
          _integer(1, 4094, "a VLAN id")),
    Field("subnet", "192.168.200.0/24", "IPv4 subnet of the cluster's VLAN.", _subnet),
    Field("master_address", "",
          "Address the master takes in the VLAN; empty for the subnet's first.",
          _address_or_empty),
    Field("dhcp_range", "192.168.200.20-192.168.200.200",
          "Addresses the master hands out by DHCP in the VLAN, FIRST-LAST: inside the subnet, "
          "apart from the master address and the probe range.", _range),
    Field("probe_range", "192.168.200.240-192.168.200.250",
          "Temporary addresses a booting node listens from before it knows its role, "
          "FIRST-LAST: inside the subnet, apart from the master address and the DHCP range.",
          _range),
    Field("discovery_timeout", 15,
          "Seconds a booting node listens for a master before it claims the role itself.",
          _integer(3, 600, "seconds")),
    Field("gossip_key", REQUIRED, "Key (base64 of 32 bytes) encrypting Consul's gossip.",
          _text(r"[A-Za-z0-9+/]{43}=", "base64 of 32 bytes"), in_build=False),
    Field("default_hostname", REQUIRED,
          "The host name the image gives every card not given its own (the build's hostname).",
          _text(HOSTNAME, "a host name (lower-case letters, digits, '-')"), in_build=False),
    Field("images", REQUIRED,
          "The tag of each container image the node runs, by name (the build's containers).",
          _images, in_build=False),
)
BY_KEY = {field.key: field for field in FIELDS}


@dataclasses.dataclass(frozen=True)
class Settings:
    name: str  # of the cluster: nodes join only a master announcing the same name
    interface: str  # the wired NIC the VLAN is put on; empty: the first one found
    vlan_id: int
    subnet: ipaddress.IPv4Network
    master_address: ipaddress.IPv4Address
    dhcp_range: AddressRange
    probe_range: AddressRange
    discovery_timeout: int  # seconds spent listening for a master before claiming the role
    gossip_key: str  # Consul's gossip encryption key, the same on every node
    default_hostname: str  # the host name the image gives every card that is not given its own
    images: dict[str, str]  # image name -> the tag the node runs

    @property
    def vlan_interface(self) -> str:
        # not NIC.ID: predictable NIC names (enxb827eb012345) would pass the 15-character limit
        return f"vlan{self.vlan_id}"


def default_path() -> Path:
    return next((place for place in PLACES if place.exists()), PLACES[0])


def load(path: Path) -> Settings:
    try:
        document = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError) as e:
        raise SettingsError(str(path), "(file)", "a readable YAML file", str(e)) from None
    if not isinstance(document, dict):
        raise SettingsError(str(path), "(file)", "a mapping of settings", document)
    return parse(document, str(path))


def parse(document: dict, source: str = "settings") -> Settings:
    """The settings of a card, every rule checked; SettingsError names the first one broken."""
    unknown = sorted(str(key) for key in document if key not in BY_KEY)
    if unknown:
        raise SettingsError(source, unknown[0], "one of the settings " + ", ".join(BY_KEY),
                            document.get(unknown[0]))
    values = {}
    for field in FIELDS:
        value = document.get(field.key, field.default)
        try:
            values[field.key] = field.parse(value)
        except Invalid as e:
            raise SettingsError(source, field.key, str(e), value) from None
    _check_addresses(values, document, source)
    if values["master_address"] is None:
        values["master_address"] = next(values["subnet"].hosts())
    return Settings(**values)


def _check_addresses(values: dict, document: dict, source: str) -> None:
    """The master address and both ranges lie in the subnet, apart from each other."""
    subnet = values["subnet"]
    hosts = f"host addresses in {subnet}"

    def fail(key: str, expected: str) -> SettingsError:
        return SettingsError(source, key, expected, document.get(key, BY_KEY[key].default))

    master = values["master_address"]
    if master is not None and not _is_host(master, subnet):
        raise fail("master_address", f"a host address in {subnet}, or empty")
    master = master or next(subnet.hosts())
    for key in ("dhcp_range", "probe_range"):
        low, high = values[key]
        if not (_is_host(low, subnet) and _is_host(high, subnet)):
            raise fail(key, f"FIRST-LAST, {hosts}")
        if low <= master <= high:
            raise fail(key, f"a range without the master address {master}")
    if _overlap(values["dhcp_range"], values["probe_range"]):
        raise fail("probe_range", "a range apart from the DHCP range")


def _is_host(address: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network) -> bool:
    return address in subnet and address not in (subnet.network_address,
                                                 subnet.broadcast_address)


def _overlap(a: AddressRange, b: AddressRange) -> bool:
    return a[0] <= b[1] and b[0] <= a[1]
