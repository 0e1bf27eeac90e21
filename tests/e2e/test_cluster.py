"""The cluster forms by itself: one master, DHCP leases in the VLAN, Consul, Swarm, overlay."""

import ipaddress
import json
import time

import pytest

from clusterlab import config

WEB = config.DEFAULT_CONTAINERS["web"]["tag"]

pytestmark = pytest.mark.e2e
SUBNET = ipaddress.IPv4Network("192.168.200.0/24")


def test_exactly_one_master_and_the_others_workers(cluster):
    roles = sorted(node.role() for node in cluster.nodes)
    assert roles == ["master", "worker", "worker"]
    assert "192.168.200.1/24" in cluster.master.sh("ip -br addr show vlan200")


def test_workers_hold_dhcp_leases_from_the_master(cluster):
    leases = cluster.master.sh("sudo cat /var/lib/clusterlab/dhcp.leases")
    for worker in cluster.workers:
        address = json.loads(worker.sh("ip -j -4 addr show dev vlan200"))[0]["addr_info"]
        dynamic = [a for a in address if a.get("dynamic")]
        assert len(dynamic) == 1, address
        ip = ipaddress.IPv4Address(dynamic[0]["local"])
        assert ip in SUBNET and ipaddress.IPv4Address("192.168.200.20") <= ip
        # by MAC: dnsmasq gives a host name to one lease only, and two cards share theirs
        assert f" {worker.mac} {ip} " in leases, leases


def test_the_vlan_carries_the_cluster_and_eth0_has_no_cluster_address(cluster):
    for node in cluster.nodes:
        details = json.loads(node.sh("ip -d -j link show dev vlan200"))[0]
        assert details["link"] == "eth0"
        assert details["linkinfo"]["info_data"]["id"] == 200
        eth0 = json.loads(node.sh("ip -j -4 addr show dev eth0"))
        assert not any(ipaddress.IPv4Address(a["local"]) in SUBNET
                       for entry in eth0 for a in entry["addr_info"])


def test_consul_has_three_alive_members(cluster):
    members = cluster.master.sh("sudo docker exec consul consul members")
    alive = [line.split()[0] for line in members.splitlines()[1:] if " alive " in line]
    assert sorted(alive) == sorted(n.consul_name() for n in cluster.nodes), members


def test_swarm_has_three_ready_nodes_managed_from_the_master(cluster):
    nodes = cluster.master.sh("sudo docker node ls --format '{{.Hostname}} {{.Status}} "
                              "{{.ManagerStatus}}'")
    rows = sorted(line.split() for line in nodes.splitlines())
    assert [r[:2] for r in rows] == sorted([n.hostname, "Ready"] for n in cluster.nodes), nodes
    assert [r[0] for r in rows if r[2:] == ["Leader"]] == [cluster.master.hostname]


def test_a_container_on_a_worker_reaches_one_on_the_master_by_name(cluster):
    master, worker = cluster.master, cluster.workers[0]
    master.sh("sudo docker network create --driver overlay --attachable e2e-overlay")
    try:
        master.sh(f"sudo docker run --detach --name e2e-web --network e2e-overlay {WEB}")
        served = master.sh("sudo docker exec e2e-web busybox hostname")
        # the image has busybox without its applet links: every applet is called by name
        fetched = worker.sh("sudo docker run --rm --network e2e-overlay --entrypoint busybox "
                            f"{WEB} sh -c 'for i in $(busybox seq 30); do "
                            "busybox wget -qO- http://e2e-web/ && exit 0; busybox sleep 2; "
                            "done; exit 1'", timeout=300)
        assert served in fetched
    finally:
        master.run("sudo docker rm --force e2e-web; sudo docker network rm e2e-overlay")


def test_health_passes_on_every_node(cluster):
    for node in cluster.nodes:
        result = node.run("sudo clusterlab-node health")
        assert result.returncode == 0 and "FAIL" not in result.stdout, result.stdout


def reboot(cluster, node) -> float:
    """Reboot node; seconds from its coming back on SSH until every node is healthy again."""
    node.wait_rebooted(node.reboot())
    start = time.monotonic()
    cluster.wait_healthy(cluster.nodes)
    return time.monotonic() - start


def ready_swarm_nodes(master) -> list[str]:
    listing = master.sh("sudo docker node ls --format '{{.Hostname}} {{.Status}}'")
    return sorted(line.split()[0] for line in listing.splitlines() if line.endswith(" Ready"))


def test_a_rebooted_worker_rejoins_as_a_worker(cluster):
    worker = cluster.workers[-1]
    cluster.figures["worker reboot to healthy again"] = reboot(cluster, worker)
    assert worker.role() == "worker"
    assert worker.hostname in ready_swarm_nodes(cluster.master)


MASTER_LATE = 60  # seconds: longer than a new node's discovery wait, shorter than a worker's


@pytest.mark.whole_restart
def test_a_restarted_cluster_keeps_its_master_even_when_the_master_comes_up_last(cluster):
    """All nodes restart (a power strip switched off and on), the master's card the slowest:
    the workers must wait for it rather than take over. (The master's own reboot is part of
    this: it comes back as master, with its address, and leads the same swarm.)"""
    master, workers = cluster.master, cluster.workers
    old_boots = {worker.name: worker.reboot() for worker in workers}
    time.sleep(MASTER_LATE)
    old_boots[master.name] = master.reboot()
    start = time.monotonic()
    for node in cluster.nodes:
        node.wait_rebooted(old_boots[node.name])
    cluster.wait_healthy(cluster.nodes)
    cluster.figures["whole cluster restart to healthy again"] = time.monotonic() - start
    assert master.role() == "master"
    assert "192.168.200.1/24" in master.sh("ip -br addr show vlan200")
    assert sorted(w.name for w in cluster.workers) == sorted(w.name for w in workers)
    assert ready_swarm_nodes(master) == sorted(n.hostname for n in cluster.nodes)
    leader = master.sh("sudo docker node ls --format '{{.Hostname}} {{.ManagerStatus}}'")
    assert f"{master.hostname} Leader" in leader.splitlines()
