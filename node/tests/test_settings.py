"""The card's cluster settings: defaults, every rule, and errors that name the key."""

import ipaddress

import pytest

from clusterlab_node import settings

A = ipaddress.IPv4Address
# what the build always writes onto the card
WRITTEN = {"gossip_key": "a" * 43 + "=", "default_hostname": "clusterlab",
           "images": {"consul": "lab/consul:1", "haproxy": "lab/haproxy:2", "web": "lab/web:3"}}


def parse(document: dict, source: str = "settings") -> settings.Settings:
    return settings.parse({**WRITTEN, **document}, source)


def test_defaults_follow_the_paper():
    s = parse({})
    assert (s.vlan_id, str(s.subnet), s.master_address) == (200, "192.168.200.0/24",
                                                            A("192.168.200.1"))
    assert s.vlan_interface == "vlan200" and s.interface == "" and s.name == "clusterlab"
    assert s.dhcp_range == (A("192.168.200.20"), A("192.168.200.200"))
    assert s.images["consul"] == "lab/consul:1"


def test_master_address_defaults_to_the_subnets_first():
    s = parse({"subnet": "10.44.0.0/16", "dhcp_range": "10.44.1.1-10.44.1.250",
               "probe_range": "10.44.2.1-10.44.2.20"})
    assert s.master_address == A("10.44.0.1")


def test_a_master_address_of_its_own_may_lie_anywhere_outside_the_ranges():
    s = parse({"master_address": "192.168.200.10"})
    assert s.master_address == A("192.168.200.10")


@pytest.mark.parametrize("document, key, expected", [
    ({"name": "Lab 1"}, "name", "lower-case"),
    ({"interface": "eth0; reboot"}, "interface", "interface name"),
    ({"vlan_id": 5000}, "vlan_id", "VLAN id from 1 to 4094"),
    ({"vlan_id": 0}, "vlan_id", "VLAN id from 1 to 4094"),
    ({"vlan_id": True}, "vlan_id", "VLAN id"),
    ({"vlan_id": "200"}, "vlan_id", "VLAN id"),
    ({"subnet": "192.168.200.0/30"}, "subnet", "at least 16 addresses"),
    ({"subnet": "192.168.200.7/24"}, "subnet", "without host bits set"),
    ({"subnet": "fd00::/64"}, "subnet", "IPv4 network"),
    ({"subnet": "10.0.0.0/24"}, "dhcp_range", "host addresses in 10.0.0.0/24"),
    ({"master_address": "10.0.0.1"}, "master_address", "host address in 192.168.200.0/24"),
    ({"master_address": "192.168.200.255"}, "master_address", "host address"),
    ({"master_address": "192.168.200.0"}, "master_address", "host address"),
    ({"master_address": "192.168.200.300"}, "master_address", "IPv4 address"),
    ({"master_address": "192.168.200.50"}, "dhcp_range", "without the master address"),
    ({"master_address": "192.168.200.245"}, "probe_range", "without the master address"),
    ({"dhcp_range": "192.168.200.1-192.168.200.100"}, "dhcp_range",
     "without the master address 192.168.200.1"),
    ({"dhcp_range": "192.168.200.50-192.168.200.20"}, "dhcp_range", "FIRST <= LAST"),
    ({"dhcp_range": "192.168.200.20"}, "dhcp_range", "FIRST-LAST"),
    ({"dhcp_range": "192.168.200.20-192.168.200.255"}, "dhcp_range", "host addresses"),
    ({"probe_range": "192.168.200.30-192.168.200.40"}, "probe_range", "apart from the DHCP"),
    ({"probe_range": "192.168.201.1-192.168.201.9"}, "probe_range", "host addresses in"),
    ({"discovery_timeout": 1}, "discovery_timeout", "seconds from 3 to 600"),
    ({"gossip_key": "short"}, "gossip_key", "base64 of 32 bytes"),
    ({"default_hostname": "Node_1"}, "default_hostname", "host name"),
    ({"images": {"consul": "lab/consul:1", "haproxy": "lab/haproxy:2"}}, "images", "web"),
    ({"images": {**WRITTEN["images"], "web": "lab/web"}}, "images", "tag of each image"),
    ({"clustr": "x"}, "clustr", "one of the settings"),
])
def test_each_broken_rule_names_its_key(document, key, expected):
    with pytest.raises(settings.SettingsError, match=rf"^card.yaml: {key}: expected ") as e:
        parse(document, "card.yaml")
    assert e.value.key == key and expected in e.value.expected


@pytest.mark.parametrize("key", ["gossip_key", "default_hostname", "images"])
def test_what_the_build_writes_is_required(key):
    document = {k: v for k, v in WRITTEN.items() if k != key}
    with pytest.raises(settings.SettingsError, match=rf"^card.yaml: {key}: .*got None$"):
        settings.parse(document, "card.yaml")


def test_settings_are_read_from_wherever_the_base_mounts_the_boot_partition(tmp_path, monkeypatch):
    firmware, boot = tmp_path / "boot/firmware/clusterlab.yaml", tmp_path / "boot/clusterlab.yaml"
    monkeypatch.setattr(settings, "PLACES", (firmware, boot))
    assert settings.default_path() == firmware  # neither there: the error names Debian's place
    boot.parent.mkdir(parents=True)
    images = "".join(f"  {name}: {tag}\n" for name, tag in WRITTEN["images"].items())
    boot.write_text(f"name: hypriot\ngossip_key: {WRITTEN['gossip_key']}\n"
                    f"default_hostname: clusterlab\nimages:\n{images}")
    assert settings.load(settings.default_path()).name == "hypriot"


@pytest.mark.parametrize("content", [b"- a list\n", b"\xff\xfe binary", b"key: [unclosed\n"])
def test_a_card_file_that_is_no_mapping_of_settings_is_refused(tmp_path, content):
    card = tmp_path / "clusterlab.yaml"
    card.write_bytes(content)
    with pytest.raises(settings.SettingsError, match=rf"^{card}: \(file\): expected "):
        settings.load(card)
