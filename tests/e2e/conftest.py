"""Three copies of the built image booted together on one virtual switch: a cluster to test.

Each card is edited as a user would edit it: a test user with an SSH key, and DHCP on the second
port (eth1, QEMU user networking) through which the test logs in. One card is given a hostname;
the others keep the image's, as cards flashed and not edited do. The first port, eth0, is on the
switch, where the nodes find each other in their VLAN.
"""

import concurrent.futures
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from clusterlab import card, config, qemu
from localnet import free_port

from vswitch import running as switch_running  # tests/e2e is on sys.path (conftest)

ROOT = Path(__file__).resolve().parents[2]
NODES = 3
USER = "tester"
BOOT_TIMEOUT = 1800  # three emulated boards sharing 2 cores
FORMING_TIMEOUT = 1800
# node1 is given a name; the others keep the image's, as cards flashed and not edited do
HOSTNAMES = {"node1": "node1"}
IMAGE_HOSTNAME = config.load([], [])["hostname"]  # the image is built with the defaults
HEALTH_TIMEOUT = 300  # the node's own commands give up after 120 s


class Node:
    """name tells the test's nodes apart; hostname is what the card calls itself."""

    def __init__(self, name: str, hostname: str, mac: str, vm: qemu.VM, key: Path,
                 serial_log: Path):
        self.name, self.hostname, self.mac = name, hostname, mac
        self.vm, self.key, self.serial_log = vm, key, serial_log

    def run(self, command: str, timeout: float = 600) -> subprocess.CompletedProcess:
        return self.vm.ssh(USER, self.key, command, timeout=timeout)

    def sh(self, command: str, timeout: float = 600) -> str:
        result = self.run(command, timeout)
        assert result.returncode == 0, f"{self.name}: {command}: {result.stdout}{result.stderr}"
        return result.stdout.strip()

    def healthy(self) -> bool:
        """Whether `clusterlab-node health` passes; a node too busy to answer is not healthy."""
        try:
            return self.run("sudo clusterlab-node health", HEALTH_TIMEOUT).returncode == 0
        except subprocess.TimeoutExpired:
            return False

    def diagnosis(self) -> str:
        """Health, the agent's journal and the commands it still runs, for a failure report."""
        try:
            # the agent's lines apart from Docker's: gossip warnings would push them out
            return self.run("sudo clusterlab-node health; sudo journalctl -b --no-pager "
                            "-u clusterlab-network -u clusterlab-node | tail -40; "
                            "sudo journalctl -b --no-pager -u docker | tail -20; "
                            "systemctl status --no-pager --lines=0 clusterlab-network "
                            "clusterlab-node", HEALTH_TIMEOUT).stdout
        except subprocess.TimeoutExpired:
            return f"no answer within {HEALTH_TIMEOUT} s; serial log: " \
                   + self.serial_log.read_text(errors="replace")[-3000:]

    def consul_name(self) -> str:
        """Consul's name for the node: a card left with the image's host name adds its
        machine id's first six hex digits (Consul refuses two nodes of one name)."""
        if self.hostname != IMAGE_HOSTNAME:
            return self.hostname
        return f"{IMAGE_HOSTNAME}-{self.sh('cat /etc/machine-id')[:6]}"

    def role(self) -> str:
        return self.sh("cat /run/clusterlab/role 2>/dev/null || true")

    def boot_profile(self) -> str:
        """Where this boot's time went, as systemd saw it: the chain of units the agent's start
        waited for, and the units that took longest."""
        return self.sh("systemd-analyze; systemd-analyze critical-chain clusterlab-node.service;"
                       " systemd-analyze blame | head -15", HEALTH_TIMEOUT)

    def boot_id(self) -> str:
        return self.sh("cat /proc/sys/kernel/random/boot_id")

    def reboot(self) -> str:
        """Start a reboot; return the boot id it had, for wait_rebooted."""
        old_boot = self.boot_id()
        self.run("sudo systemctl reboot")
        return old_boot

    def wait_rebooted(self, old_boot: str) -> None:
        """Until SSH answers from the new boot (the old one answers while it shuts down)."""
        deadline = time.monotonic() + BOOT_TIMEOUT
        while time.monotonic() < deadline:
            self.vm.wait_for_ssh(USER, self.key, max(deadline - time.monotonic(), 1))
            with contextlib.suppress(subprocess.TimeoutExpired):
                if self.run("cat /proc/sys/kernel/random/boot_id", 30).stdout.strip() \
                        not in ("", old_boot):
                    return
            time.sleep(3)
        pytest.fail(f"{self.name} did not come back from its reboot within {BOOT_TIMEOUT} s")


class Cluster:
    def __init__(self, nodes: list[Node]):
        self.nodes = nodes
        self.figures: dict[str, float] = {}

    @property
    def master(self) -> Node:
        masters = [n for n in self.nodes if n.role() == "master"]
        assert len(masters) == 1, f"masters: {[n.name for n in masters]}"
        return masters[0]

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.role() == "worker"]

    def wait_healthy(self, nodes: list[Node], timeout: float = FORMING_TIMEOUT) -> float:
        """Seconds until `clusterlab-node health` passes on every one of nodes in the same round
        (a node that passed alone may have been a master of its own)."""
        start = time.monotonic()
        # asked together: each answer takes half a minute on an emulated board
        with concurrent.futures.ThreadPoolExecutor(len(nodes)) as pool:
            while not all(pool.map(Node.healthy, nodes)):
                if time.monotonic() - start > timeout:
                    reports = dict(zip((n.name for n in nodes), pool.map(Node.diagnosis, nodes)))
                    pytest.fail(f"not healthy within {timeout:.0f} s: "
                                f"{json.dumps(reports, indent=1)}")
                time.sleep(10)
        return time.monotonic() - start


@pytest.fixture(scope="session")
def image(tmp_path_factory) -> Path:
    """The default image, built with the project's own command (zstd: the test needs the raw
    .img only, and the layers are usually cached from `make test`)."""
    if os.geteuid() != 0:
        pytest.fail("the end-to-end tests build and boot images and need root")
    out = tmp_path_factory.mktemp("images")
    result = subprocess.run([sys.executable, str(ROOT / "build.py"), "build",
                             "--set", f"image.output_dir={out}",
                             "--set", "image.compression=zstd"], cwd=ROOT)
    assert result.returncode == 0, "the image build failed (its log is above)"
    manifest = json.loads(next(out.glob("*.manifest.json")).read_text())
    return out / f"{manifest['name']}.img"


def make_card(image: Path, directory: Path, name: str, hostname: str | None, key: Path) -> Path:
    copy = directory / f"{name}.img"
    subprocess.run(["cp", "--sparse=always", str(image), str(copy)], check=True)
    card.personalize(copy, hostname=hostname, user=USER,
                     ssh_key=key.with_suffix(".pub").read_text())

    def second_port_and_no_lan_wait(network: dict) -> None:
        network["ethernets"]["eth1"] = {"dhcp4": True}
        # the switch has no LAN DHCP server: booting must not wait for an answer on eth0
        network["ethernets"]["eth0"]["optional"] = True

    card.edit(copy, "network-config", second_port_and_no_lan_wait)
    return copy


@pytest.fixture(scope="session")
def cluster(image, tmp_path_factory):
    """Three nodes powered on at the same moment; yielded once every one reports healthy."""
    tmp = tmp_path_factory.mktemp("cluster")
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    names = [f"node{i}" for i in range(1, NODES + 1)]
    cards = [make_card(image, tmp, name, HOSTNAMES.get(name), key) for name in names]
    with switch_running(tmp) as switch, contextlib.ExitStack() as stack:
        power_on = time.monotonic()
        nodes = []
        for i, (name, copy) in enumerate(zip(names, cards), start=1):
            serial, mac = tmp / f"{name}.serial.log", f"52:54:00:c1:00:{i:02x}"
            vm = stack.enter_context(qemu.booted(
                copy, ssh_port=free_port(), serial_log=serial, memory_mib=1536, cpus=1,
                cluster_link=switch.port(i), mac=mac))
            nodes.append(Node(name, HOSTNAMES.get(name, IMAGE_HOSTNAME), mac, vm, key, serial))
        built = Cluster(nodes)
        try:
            for node in nodes:
                node.vm.wait_for_ssh(USER, key, BOOT_TIMEOUT)
            built.figures["power-on to the last SSH login"] = time.monotonic() - power_on
            built.wait_healthy(nodes)
            built.figures["power-on to a healthy cluster"] = time.monotonic() - power_on
            for node in nodes:
                print(f"--- {node.name}: first boot profile\n{node.boot_profile()}")
        except BaseException:
            for node in nodes:
                print(f"--- {node.name} serial console (end)\n"
                      + node.serial_log.read_text(errors="replace")[-4000:])
            raise
        yield built
        login, healthy = (built.figures[f"power-on to {what}"]
                          for what in ("the last SSH login", "a healthy cluster"))
        print("\n" + "\n".join(f"{what}: {seconds:.0f} s"
                               for what, seconds in built.figures.items())
              + f"\nhealthy cluster / last SSH login: {healthy / login:.2f}")
