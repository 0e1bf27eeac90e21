"""Boot a card flashed from the built image by `build.py flash` (hostname, test key), in QEMU."""

import subprocess
import sys
from pathlib import Path

import pytest

from clusterlab import config, disk, qemu
from localnet import free_port

pytestmark = [pytest.mark.integration, pytest.mark.boot]
ROOT = Path(__file__).resolve().parents[2]
GROWTH = 1 << 30
BOOT_TIMEOUT = 900  # TCG emulation on 2 cores: about 2 minutes normally


@pytest.fixture(scope="module")
def node(built, module_tmp):
    """A booted VM of a card whose user-data lists a test user with a fresh SSH key."""
    tmp = module_tmp
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    # flashed as a user would flash a card bigger than the image: the root must grow into it
    card = tmp / "card.img"
    subprocess.run(["truncate", "--size", str(built["img"].stat().st_size + GROWTH), str(card)],
                   check=True)
    flashed = subprocess.run([sys.executable, str(ROOT / "build.py"), "flash", str(built["xz"]),
                              "--device", str(card), "--hostname", "testnode", "--user", "tester",
                              "--ssh-key", str(tmp / "id_ed25519.pub"), "--yes"])
    assert flashed.returncode == 0
    boot = disk.partitions(card)[0]
    user_data = disk.fat_read(card, boot, "user-data").decode()
    assert user_data.startswith("#cloud-config\n") and "tester" in user_data
    serial = tmp / "serial.log"
    with qemu.booted(card, ssh_port=free_port(), serial_log=serial) as vm:
        try:
            vm.wait_for_ssh("tester", key, BOOT_TIMEOUT)
        except Exception:
            print(serial.read_text(errors="replace")[-5000:])
            raise
        yield vm, key


def sh(node, command: str, timeout: float = 600) -> str:
    vm, key = node
    result = vm.ssh("tester", key, command, timeout=timeout)
    assert result.returncode == 0, f"{command}: {result.stdout}{result.stderr}"
    return result.stdout.strip()


def test_cloud_init_finished_without_warnings(node):
    status = sh(node, "cloud-init status --wait --long; true")
    assert "status: done" in status, status
    assert "recoverable_errors: {}" in status, status


def test_system_is_running(node):
    state = sh(node, "systemctl is-system-running --wait || systemctl --failed --no-legend")
    assert state == "running", state


def test_hostname_from_the_card(node):
    assert sh(node, "hostname") == "testnode"


def test_root_grew_to_fill_the_card(node, built):
    image_root = disk.partitions(built["img"])[1]
    disk_size = int(sh(node, "lsblk -bdno SIZE /dev/vda"))
    root_size = int(sh(node, "lsblk -bdno SIZE /dev/vda2"))
    fs_size = int(sh(node, "df -B1 --output=size / | tail -1"))
    assert root_size >= image_root.size + GROWTH - disk.ALIGN
    assert disk_size - (image_root.start + root_size) < disk.ALIGN
    assert fs_size > 0.9 * root_size


def test_only_key_logins(node):
    settings = sh(node, "sudo sshd -T")
    assert "passwordauthentication no" in settings and "permitrootlogin no" in settings
    assert sh(node, "sudo passwd --status tester").split()[1] == "L"


def test_host_keys_and_machine_id_made_on_first_boot(node):
    assert len(sh(node, "cat /etc/machine-id")) == 32
    assert "ssh_host_ed25519_key" in sh(node, "ls /etc/ssh")


def test_docker_engine_runs(node):
    assert sh(node, "sudo docker info --format '{{.ServerVersion}}'", timeout=300)


def test_baked_images_were_loaded_once_on_first_boot(node, built):
    unit = "clusterlab-images.service"
    sh(node, "systemctl is-system-running --wait; true")
    assert sh(node, f"systemctl show -p Result -p ExecMainStatus {unit}").split() == [
        "Result=success", "ExecMainStatus=0"]
    sh(node, "test -e /var/lib/clusterlab/images/.loaded")
    tags = sh(node, "sudo docker images --format '{{.Repository}}:{{.Tag}}'").split()
    assert sorted(tags) == sorted(entry["tag"] for entry in built["manifest"]["containers"])


def test_a_lone_node_becomes_a_healthy_master(node):
    """Alone on its VLAN, the node finds no master, claims the role and runs everything a master
    runs; every health check passes."""
    unit = sh(node, "systemctl show -p ActiveState -p Result clusterlab-node.service").split()
    assert sorted(unit) == ["ActiveState=active", "Result=success"]
    result = node[0].ssh("tester", node[1], "sudo clusterlab-node health", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "PASS role: master" in result.stdout and "FAIL" not in result.stdout
    assert "192.168.200.1/24" in sh(node, "ip -br addr show vlan200")


def test_the_masters_consul_serves_its_web_ui(node):
    ask = ("python3 -c \"import urllib.request as u; "
           "print(u.urlopen('http://127.0.0.1:8500/{}', timeout=10).read().decode())\"")
    assert "<title>Consul" in sh(node, ask.format("ui/"))
    # the tag the card's clusterlab.yaml names, written from the build's containers
    assert sh(node, "sudo docker inspect --format '{{.Config.Image}}' consul") == \
        config.DEFAULT_CONTAINERS["consul"]["tag"]


def test_no_python_was_compiled_on_the_node(node, built):
    """Every Python program the node ran (cloud-init, the agent, health above) found its
    byte-code in the image: none was written since. Every file of the image has the build's
    time; byte-code compiled on the node would have a later one."""
    sh(node, "cloud-init status --wait; systemctl is-system-running --wait; true")
    epoch = built["manifest"]["source_date_epoch"]
    written = sh(node, f"sudo find /usr/lib -name '*.pyc' -newermt @{epoch + 1} | head -20")
    assert written == "", f"compiled on the node:\n{written}"
    # the image does hold byte-code: the check above cannot pass by finding none at all
    assert int(sh(node, "find /usr/lib/python3/dist-packages/cloudinit -name '*.pyc' | wc -l")) \
        > 100
