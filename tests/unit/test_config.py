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
