import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from clusterlab import config
from clusterlab.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGq7 me@laptop"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "my.yaml"
    path.write_text(text)
    return path


def error_of(files=(), overrides=()) -> str:
    with pytest.raises(UserError) as caught:
        config.load(list(files), list(overrides))
    return str(caught.value)


def test_defaults_come_from_the_declarations():
    cfg = config.load([], [])
    for setting in config.SETTINGS:
        assert cfg[setting.key] == setting.default


def test_committed_default_file_is_the_generated_one():
    assert (ROOT / "clusterlab.yaml").read_text() == config.documented_defaults()


def test_default_file_documents_and_parses_to_every_default(tmp_path):
    text = config.documented_defaults()
    cfg = config.load([write(tmp_path, text)], [])
    assert cfg.nested() == config.load([], []).nested()
    for setting in config.SETTINGS:
        assert setting.doc[:40] in " ".join(line.lstrip("# ") for line in text.splitlines())


def test_files_apply_in_order_then_set_overrides(tmp_path):
    first = write(tmp_path, "arch: armhf\nimage:\n  compression: zstd\n")
    second = tmp_path / "second.yaml"
    second.write_text("image: {compression: xz}\n")
    cfg = config.load([first, second], ["hostname=node7", "image.root_headroom_mib=1024"])
    assert cfg["arch"] == "armhf"
    assert cfg["image.compression"] == "xz"
    assert cfg["hostname"] == "node7"
    assert cfg["image.root_headroom_mib"] == 1024
    assert cfg.nested()["image"]["compression"] == "xz"


def test_users_are_accepted_when_well_formed(tmp_path):
    path = write(tmp_path, f"users:\n  - name: pi\n    groups: [sudo, docker]\n    ssh_keys: ['{KEY}']\n")
    assert config.load([path], [])["users"][0]["name"] == "pi"


@pytest.mark.parametrize("text, expected", [
    ("colour: blue\n", "colour: unknown setting"),
    ("image:\n  compresion: xz\n", "image.compresion: unknown setting (did you mean image.compression?)"),
    ("arch: x86\n", "arch: expected one of arm64, armhf, got string 'x86'"),
    ("image:\n  root_headroom_mib: lots\n", "image.root_headroom_mib: expected an integer from 64 to 65536, got string 'lots'"),
    ("image:\n  root_headroom_mib: 1\n", "expected an integer from 64 to 65536, got integer 1"),
    ("image:\n  root_headroom_mib: true\n", "got boolean True"),
    ("hostname: Not_Valid\n", "hostname: expected a host name"),
    ("users:\n  - name: pi\n    ssh_keys: [hunter2]\n", "users: expected a list of users"),
    ("users:\n  - name: pi\n    password: hunter2\n", "users: expected a list of users"),
    ("users: pi\n", "users: expected a list of users"),
    ("base:\n  mirror: deb.debian.org\n", "base.mirror: expected an http(s):// or file:// URL"),
    ("- just\n- a list\n", "expected a mapping of settings, got list"),
    ("arch: [unclosed\n", "not valid YAML"),
])
def test_bad_file_values_name_file_key_expected_and_found(tmp_path, text, expected):
    path = write(tmp_path, text)
    message = error_of([path])
    assert message.startswith(f"{path}: ")
    assert expected in message


def test_missing_file_is_reported(tmp_path):
    assert "cannot read config file" in error_of([tmp_path / "nope.yaml"])


@pytest.mark.parametrize("item, expected", [
    ("arch=sparc", "--set: arch: expected one of arm64, armhf, got string 'sparc'"),
    ("nosuch=1", "--set: nosuch: unknown setting"),
    ("arch", "--set arch: expected key=value"),
])
def test_bad_overrides(item, expected):
    assert expected in error_of(overrides=[item])


def run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "build.py"), *args], capture_output=True,
                          text=True, cwd=ROOT)


def test_cli_error_is_one_line_and_status_2():
    result = run_cli("config", "--set", "image.compression=rar")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "Traceback" not in result.stderr
    assert "image.compression: expected one of xz, zstd, got string 'rar'" in result.stderr


def test_cli_prints_effective_config(tmp_path):
    path = write(tmp_path, "hostname: rack1\n")
    result = run_cli("config", "-c", str(path), "--set", "arch=armhf")
    assert result.returncode == 0
    printed = yaml.safe_load(result.stdout)
    assert printed["hostname"] == "rack1" and printed["arch"] == "armhf"


def test_a_text_setting_keeps_what_was_typed_even_when_it_looks_like_a_number():
    digits = "0123456789" * 6 + "0123"
    assert config.load([], [f"base.sha256={digits}"])["base.sha256"] == digits
    with pytest.raises(UserError, match="base.sha256: expected 64 lower-case hex digits"):
        config.load([], ["base.sha256=12"])


@pytest.mark.parametrize("settings, expected", [
    (["cluster.subnet=10.0.0.0/24"], "cluster.dhcp_range: expected FIRST-LAST, host addresses in "
     "10.0.0.0/24, got string '192.168.200.20-192.168.200.200'"),
    (["cluster.subnet=192.168.200.7/24"], "cluster.subnet: expected an IPv4 network of at least 16 "
     "addresses, without host bits set"),
    (["cluster.subnet=192.168.200.0/29"], "cluster.subnet: expected an IPv4 network of at least 16"),
    (["cluster.dhcp_range=192.168.200.90-192.168.200.30"], "cluster.dhcp_range: expected FIRST-LAST,"
     " two IPv4 addresses with FIRST <= LAST, got string '192.168.200.90-192.168.200.30'"),
    (["cluster.dhcp_range=192.168.200.20-192.168.200.245"], "cluster.probe_range: expected a range "
     "apart from the DHCP range"),
    (["cluster.probe_range=192.168.200.100-192.168.200.110"], "cluster.probe_range: expected a range"
     " apart from the DHCP range, got string '192.168.200.100-192.168.200.110'"),
    (["cluster.master_address=10.1.1.1"], "cluster.master_address: expected a host address in "
     "192.168.200.0/24, or empty, got string '10.1.1.1'"),
    (["cluster.master_address=192.168.200.255"], "cluster.master_address: expected a host address"),
    (["cluster.master_address=192.168.200.30"], "cluster.dhcp_range: expected a range without the "
     "master address 192.168.200.30"),
    (["cluster.dhcp_range=192.168.200.1-192.168.200.200"], "cluster.dhcp_range: expected a range "
     "without the master address 192.168.200.1"),
    (["cluster.vlan_id=0"], "cluster.vlan_id: expected a VLAN id from 1 to 4094, got integer 0"),
    (["cluster.vlan_id=4095"], "cluster.vlan_id: expected a VLAN id from 1 to 4094"),
    (["cluster.interface=eth0:1"], "cluster.interface: expected a network interface name"),
    (["cluster.gossip_key=c2hvcnQ="], "cluster.gossip_key: expected base64 of 32 bytes, or empty"),
    (["containers.web=null"], "containers: expected an image named web (both demos' web server), "
     "got none"),
    (["containers.consul=null"], "containers: expected an image named consul"),
])
def test_a_cluster_section_a_card_would_refuse_is_refused_by_name(settings, expected):
    result = run_cli("config", *[arg for setting in settings for arg in ("--set", setting)])
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith(f"error: --set: {expected}")


def test_an_inconsistent_cluster_section_names_the_file_that_made_it(tmp_path):
    path = write(tmp_path, "cluster:\n  subnet: 10.9.0.0/16\n  dhcp_range: 10.9.1.1-10.9.1.99\n")
    result = run_cli("config", "-c", str(path))
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {path}: cluster.probe_range: expected FIRST-LAST, "
                                    "host addresses in 10.9.0.0/16")
    fixed = run_cli("config", "-c", str(path), "--set", "cluster.probe_range=10.9.2.1-10.9.2.9")
    assert fixed.returncode == 0, fixed.stderr
    assert yaml.safe_load(fixed.stdout)["cluster"]["subnet"] == "10.9.0.0/16"


def test_a_cluster_mistake_names_where_the_faulty_setting_came_from(tmp_path):
    no_web = write(tmp_path, "containers:\n  web: null\n")
    result = run_cli("config", "-c", str(no_web), "--set", "cluster.vlan_id=5")
    assert result.stderr.startswith(f"error: {no_web}: containers: expected an image named web")
    subnet = write(tmp_path, "cluster:\n  subnet: 10.9.0.0/16\n")
    result = run_cli("config", "-c", str(subnet), "--set", "hostname=node1")
    assert result.stderr.startswith(f"error: {subnet}: cluster.dhcp_range: expected FIRST-LAST")


def test_two_images_of_one_tag_are_refused():
    assert "containers.web.tag: expected a tag of its own (the image consul has it), got " \
           "string 'clusterlab/consul:1.8.7'" in error_of(overrides=[
               "containers.web={tag: 'clusterlab/consul:1.8.7', source: debian, "
               "packages: [busybox]}"])
