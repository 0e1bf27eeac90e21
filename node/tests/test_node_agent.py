"""The cluster agent's decisions, as plain functions: discovery, election, health."""

import ipaddress

import pytest

from clusterlab_node import agent, election, health, system

A = ipaddress.IPv4Address


BROWSE = "\n".join([
    "+;eth0.200;IPv4;clusterlab-master;_clusterlab._tcp;local",
    '=;eth0.200;IPv4;clusterlab-master;_clusterlab._tcp;local;n1.local;192.168.200.1;8500;'
    '"role=master" "cluster=lab" "id=bbb"',
    '=;eth0.200;IPv6;clusterlab-master;_clusterlab._tcp;local;n1.local;fe80::1;8500;"role=master"',
    '=;eth0;IPv4;other;_clusterlab._tcp;local;n9.local;10.0.0.9;8500;"role=master" "cluster=lab"',
    '=;eth0.200;IPv4;x;_clusterlab._tcp;local;n2.local;192.168.200.1;8500;'
    '"role=master" "cluster=other" "id=aaa"',
    '=;eth0.200;IPv4;printer;_ipp._tcp;local;p.local;192.168.200.9;631;""',
])


def test_browse_output_gives_this_clusters_masters_on_the_vlan_only():
    masters = election.masters_of(election.parse_browse(BROWSE), "lab", "eth0.200")
    assert [(m.address, m.port, m.node_id) for m in masters] == [("192.168.200.1", 8500, "bbb")]


def test_a_node_that_sees_a_master_becomes_a_worker():
    masters = election.masters_of(election.parse_browse(BROWSE), "lab", "eth0.200")
    assert election.first_decision(masters, "ccc") == "worker"
    assert election.first_decision([], "ccc") == "claim"


def test_a_rebooted_master_that_hears_only_itself_claims_again():
    masters = election.masters_of(election.parse_browse(BROWSE), "lab", "eth0.200")
    assert election.first_decision(masters, "bbb") == "claim"


def announcement(node_id: str, was: str = "", role: str = "candidate") -> election.Announcement:
    return election.Announcement("eth0.200", f"{role}-{node_id}", "192.168.200.241", 8500,
                                 {"role": role, "cluster": "lab", "id": node_id, "was": was})


def test_of_candidates_standing_together_only_the_lowest_id_wins():
    ids = ["c3", "a1", "b2"]
    heard = [announcement(i) for i in ids]
    winners = [i for i in ids if election.wins_candidacy(heard, i, "")]
    assert winners == ["a1"]
    assert election.wins_candidacy([announcement("a1")], "a1", "")  # alone: wins


def test_of_candidates_standing_together_the_former_master_wins_whatever_its_id():
    heard = [announcement("a1", "worker"), announcement("z9", "master"), announcement("b2")]
    winners = [a.node_id for a in heard if election.wins_candidacy(heard, a.node_id,
                                                                   a.txt["was"])]
    assert winners == ["z9"]


def test_a_master_announced_during_the_candidacy_beats_every_candidate():
    heard = [announcement("z9", role="master"), announcement("a1", "master")]
    assert not election.wins_candidacy(heard, "a1", "master")
    assert election.contenders_of(heard + [announcement("q", role="worker")], "lab",
                                  "eth0.200") == heard


def test_a_candidacy_is_not_a_master_to_join():
    heard = [announcement("a1")]
    assert election.masters_of(heard, "lab", "eth0.200") == []
    assert election.first_decision(election.masters_of(heard, "lab", "eth0.200"), "b2") == "claim"


def test_the_former_master_claims_first_and_a_former_worker_waits_for_it():
    master = election.discovery_wait(15, "z9", "master")
    new = election.discovery_wait(15, "a1", "")
    worker = election.discovery_wait(15, "a1", "worker")
    assert master == 15
    assert 15 <= new <= 15 + election.MAX_JITTER
    assert worker == new + election.FORMER_WORKER_GRACE


def test_jitter_differs_between_nodes_and_stays_in_bounds():
    waits = {election.jitter(f"node-{i}") for i in range(20)}
    assert len(waits) == 20 and all(0 <= w <= election.MAX_JITTER for w in waits)
    assert election.jitter("x") == election.jitter("x")


def test_probe_candidates_cover_the_range_from_a_start_chosen_by_id():
    low, high = A("192.168.200.240"), A("192.168.200.250")
    first = election.probe_candidates(low, high, "node-a")
    assert sorted(first) == [A(int(low) + i) for i in range(11)]
    starts = {election.probe_candidates(low, high, f"node-{i}")[0] for i in range(30)}
    assert len(starts) > 3


SUBNET = ipaddress.IPv4Network("192.168.200.0/24")
MASTER = A("192.168.200.1")


def healthy(**changes) -> health.Facts:
    facts = dict(role="master", vlan_id=200, addresses=["192.168.200.1/24"], dynamic=False,
                 dhcp_server_running=True, masters_seen=1, consul_leader="192.168.200.1:8300",
                 consul_members={"n1": "alive", "n2": "alive", "n3": "alive"},
                 swarm_state="active", swarm_nodes=3)
    return health.Facts(**{**facts, **changes})


def failed(facts: health.Facts) -> list[str]:
    return [c.name for c in health.evaluate(facts, 200, SUBNET, MASTER) if not c.passed]


def test_a_healthy_master_passes_everything():
    text, status = health.report(health.evaluate(healthy(), 200, SUBNET, MASTER))
    assert status == 0 and "FAIL" not in text and text.count("PASS") == 8


@pytest.mark.parametrize("changes, check", [
    (dict(role=""), "role"),
    (dict(vlan_id=None), "vlan"),
    (dict(vlan_id=201), "vlan"),
    (dict(addresses=["192.168.200.7/24"]), "address"),
    (dict(dhcp_server_running=False), "dhcp server"),
    (dict(masters_seen=2), "discovery"),
    (dict(masters_seen=0), "discovery"),
    (dict(consul_leader=""), "consul"),
    (dict(consul_members={"n1": "alive", "n2": "failed"}), "consul"),
    (dict(swarm_state="inactive"), "swarm"),
    (dict(swarm_nodes=2), "swarm nodes"),
])
def test_each_check_fails_on_its_own_fault(changes, check):
    assert check in failed(healthy(**changes))
    assert health.report(health.evaluate(healthy(**changes), 200, SUBNET, MASTER))[1] == 1


def test_a_worker_needs_an_address_from_dhcp():
    worker = dict(role="worker", addresses=["192.168.200.23/24"], dhcp_server_running=False,
                  swarm_nodes=None)
    assert failed(healthy(**worker, dynamic=True)) == []
    assert failed(healthy(**worker, dynamic=False)) == ["address"]


def test_a_worker_stays_only_in_the_swarm_of_the_current_manager():
    member = {"LocalNodeState": "active", "RemoteManagers": [{"NodeID": "m1", "Addr": "x:2377"}]}
    assert election.in_swarm_of(member, "m1")
    assert not election.in_swarm_of(member, "m2")  # the master changed: leave, join anew
    assert not election.in_swarm_of({**member, "LocalNodeState": "pending"}, "m1")
    assert not election.in_swarm_of({"LocalNodeState": "inactive", "RemoteManagers": None}, "m1")


def test_a_command_that_does_not_answer_is_stopped_and_reported():
    stopped = system.run("sleep", "30", check=False, timeout=0.5)
    assert stopped.returncode == system.TIMED_OUT and "no answer within" in stopped.stderr
    with pytest.raises(system.CommandError, match="sleep 30 failed .*no answer within 0 s"):
        system.run("sleep", "30", timeout=0.2)


def test_cards_left_with_the_images_host_name_get_distinct_consul_names():
    a, b = "3f2a9c" + "0" * 26, "b71e04" + "0" * 26
    assert agent.consul_node_name("clusterlab", "clusterlab", a) == "clusterlab-3f2a9c"
    assert agent.consul_node_name("clusterlab", "clusterlab", b) == "clusterlab-b71e04"
    assert agent.consul_node_name("node1", "clusterlab", a) == "node1"  # a name of its own
