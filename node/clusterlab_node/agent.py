"""The boot procedure: VLAN, probe address, discovery, master or worker (join_network, before
Docker starts); then Consul and Swarm (start_services)."""

import ipaddress
import json
import socket
import time
from pathlib import Path

from . import election, system
from .settings import Settings

ROLE_FILE = system.RUNTIME / "role"
# the role whose Consul and Swarm state this node holds (kept across reboots)
HELD_ROLE_FILE = system.STATE / "role"
ANNOUNCED_PORT = 8500  # the master's Consul UI and API
CANDIDACY = 10  # seconds a candidate listens for rivals (mDNS is slow emulated)
JOIN_TIMEOUT = 600
SWARM_SETTLE = 60  # seconds a swarm member may take to reach its manager at start-up
TOKEN_KEY = "/v1/kv/clusterlab/swarm/worker-token"
MANAGER_KEY = "/v1/kv/clusterlab/swarm/manager"  # the manager's Swarm node id


def node_id() -> str:
    return Path("/etc/machine-id").read_text().strip()


def consul_node_name(hostname: str, default_hostname: str, me: str) -> str:
    """Consul refuses a second node of one name, and every card flashed from one image and not
    given a name of its own is called the same: those are told apart by their machine id."""
    return f"{hostname}-{me[:6]}" if hostname == default_hostname else hostname


def join_network(s: Settings) -> str:
    """VLAN, discovery, then the master address or one by DHCP; return the role. Runs before
    Docker starts: a node in a swarm finds its manager at start-up, so the VLAN address must
    be there first."""
    me, last_role = node_id(), held_role()
    system.vlan_up(s.interface or system.wired_interface(), s.vlan_interface, s.vlan_id)
    system.restrict_avahi(s.vlan_interface)
    probe = _take_probe_address(s, me)
    role = _elect(s, me, last_role, probe)
    if role == "worker":
        system.remove_address(s.vlan_interface, probe, s.subnet.prefixlen)
        system.log(f"worker: {system.dhcp_client(s.vlan_interface)} by DHCP")
    system.RUNTIME.mkdir(parents=True, exist_ok=True)
    ROLE_FILE.write_text(role + "\n")
    return role


def start_services(s: Settings) -> str:
    """Consul and Swarm for the role join_network chose this boot; return the role."""
    role, held = current_role(), held_role()
    if held not in ("", role):
        system.log(f"was {held}, now {role}: leaving the old swarm, clearing Consul")
        system.forget_cluster_state()
    if role == "master":
        _consul_server(s)
        _swarm_init(s)
    elif role == "worker":
        address = next((ipaddress.IPv4Address(a["local"])
                        for a in system.addresses_of(s.vlan_interface) if a.get("dynamic")), None)
        if address is None:
            raise system.CommandError(f"no DHCP address on {s.vlan_interface}")
        _consul_agent(s, address)
        _swarm_join(s, address)
    else:
        raise system.CommandError("the node has no role yet: see "
                                  "`systemctl status clusterlab-network.service`")
    system.STATE.mkdir(parents=True, exist_ok=True)
    HELD_ROLE_FILE.write_text(role + "\n")
    return role


def current_role() -> str:
    """This boot's role (the file is under /run, so a reboot starts without one)."""
    return ROLE_FILE.read_text().strip() if ROLE_FILE.exists() else ""


def held_role() -> str:
    """The role this node ran Consul and Swarm for last ("" on a new node)."""
    return HELD_ROLE_FILE.read_text().strip() if HELD_ROLE_FILE.exists() else ""


def _take_probe_address(s: Settings, me: str) -> ipaddress.IPv4Address:
    for candidate in election.probe_candidates(*s.probe_range, me):
        if system.address_free(candidate, s.vlan_interface):
            system.add_address(s.vlan_interface, candidate, s.subnet.prefixlen)
            system.log(f"probe address {candidate}")
            return candidate
    raise system.CommandError(f"every probe address {s.probe_range[0]}-{s.probe_range[1]} "
                              "is taken")


def _discover(s: Settings, me: str, last_role: str) -> list[election.Announcement]:
    """Listen for a master until this node's discovery wait runs out."""
    deadline = time.monotonic() + election.discovery_wait(s.discovery_timeout, me, last_role)
    while True:
        masters = election.masters_of(system.browse(), s.name, s.vlan_interface)
        if masters or time.monotonic() > deadline:
            system.log(f"discovery: {len(masters)} master(s) of {s.name}")
            return masters
        time.sleep(1)


def _elect(s: Settings, me: str, last_role: str, probe: ipaddress.IPv4Address) -> str:
    """Worker as soon as a master is heard; otherwise stand as a candidate, and take the master
    role on winning. A node that lost listens again: the winner announces itself as master in
    seconds (and should it fail meanwhile, the node stands again)."""
    while True:
        masters = _discover(s, me, last_role)
        if election.first_decision(masters, me) == "worker":
            return "worker"
        if not _stand_as_candidate(s, me, last_role):
            system.log("a rival candidate ranks first: listening for its announcement as master")
            continue
        if not system.address_free(s.master_address, s.vlan_interface):
            system.log(f"{s.master_address} is taken: another node is claiming master")
            return "worker"
        _take_master_role(s, me, last_role, probe)
        return "master"


def _stand_as_candidate(s: Settings, me: str, last_role: str) -> bool:
    """Announce a candidacy (from the probe address) and gather every rival heard while it runs;
    whether this node ranks first."""
    system.publish(s.name, me, last_role, ANNOUNCED_PORT, role="candidate")
    heard = []
    deadline = time.monotonic() + CANDIDACY
    while time.monotonic() < deadline:
        heard += election.contenders_of(system.browse(), s.name, s.vlan_interface)
        time.sleep(1)
    system.unpublish()
    return election.wins_candidacy(heard, me, last_role)


def _take_master_role(s: Settings, me: str, last_role: str,
                      probe: ipaddress.IPv4Address) -> None:
    # the probe goes first: removing a subnet's first (primary) address removes the others too
    system.remove_address(s.vlan_interface, probe, s.subnet.prefixlen)
    system.add_address(s.vlan_interface, s.master_address, s.subnet.prefixlen)
    # neighbours may still hold another MAC for the master address (a master that was replaced)
    system.announce_address(s.vlan_interface, s.master_address)
    system.publish(s.name, me, last_role, ANNOUNCED_PORT, role="master")
    system.dhcp_server(s.vlan_interface, s.master_address, s.subnet, *s.dhcp_range)
    system.log(f"master: {s.master_address}, serving DHCP {s.dhcp_range[0]}-{s.dhcp_range[1]}")


def _consul_server(s: Settings) -> None:
    system.consul_container(s.images["consul"], [
        "agent", "-server", "-bootstrap-expect", "1", "-ui", "-data-dir", "/var/lib/consul",
        "-node", _consul_node_name(s), "-bind", str(s.master_address), "-client", "0.0.0.0",
        "-encrypt", s.gossip_key])
    _wait(lambda: system.consul_leader(), "a Consul leader")


def _consul_agent(s: Settings, address: ipaddress.IPv4Address) -> None:
    system.consul_container(s.images["consul"], [
        "agent", "-data-dir", "/var/lib/consul", "-node", _consul_node_name(s),
        "-bind", str(address), "-client", "127.0.0.1", "-retry-join", str(s.master_address),
        "-encrypt", s.gossip_key])
    _wait(lambda: system.consul_leader(), "joining Consul")


def _consul_node_name(s: Settings) -> str:
    return consul_node_name(socket.gethostname(), s.default_hostname, node_id())


def _swarm_init(s: Settings) -> None:
    if system.swarm_info().get("LocalNodeState") != "active":
        system.docker("swarm", "init", "--advertise-addr", str(s.master_address),
                      "--listen-addr", f"{s.master_address}:2377")
    token = system.docker("swarm", "join-token", "--quiet", "worker").stdout.strip()
    _wait(lambda: system.consul_put(TOKEN_KEY, token), "storing the Swarm join token in Consul")
    manager = system.swarm_info()["NodeID"]
    _wait(lambda: system.consul_put(MANAGER_KEY, manager), "storing the Swarm manager in Consul")


def _swarm_join(s: Settings, address: ipaddress.IPv4Address) -> None:
    token = _wait(lambda: system.consul_value(TOKEN_KEY), "the Swarm join token in Consul")
    manager = _wait(lambda: system.consul_value(MANAGER_KEY), "the Swarm manager in Consul")
    info = _settled_swarm_info()
    if election.in_swarm_of(info, manager):
        return
    if info.get("LocalNodeState", "inactive") != "inactive":
        system.log("member of another swarm (its manager is gone): leaving it")
        system.docker("swarm", "leave", "--force")
    system.docker("swarm", "join", "--token", token, "--advertise-addr",
                  str(address), f"{s.master_address}:2377")


def _settled_swarm_info() -> dict:
    """Docker's swarm state once it has stopped connecting (a member reaches its manager in
    seconds; one that cannot stays pending)."""
    deadline = time.monotonic() + SWARM_SETTLE
    while (info := system.swarm_info()).get("LocalNodeState") == "pending" \
            and time.monotonic() < deadline:
        time.sleep(2)
    return info


def _wait(check, what: str):
    deadline = time.monotonic() + JOIN_TIMEOUT
    while not (result := check()):
        if time.monotonic() > deadline:
            raise system.CommandError(f"gave up waiting for {what} after {JOIN_TIMEOUT} s")
        time.sleep(2)
    return result


def status(s: Settings) -> dict:
    swarm = system.swarm_info()
    return {"role": current_role(), "vlan": s.vlan_interface,
            "addresses": [f"{a['local']}/{a['prefixlen']}"
                          for a in system.addresses_of(s.vlan_interface)],
            "master": str(s.master_address), "consul_members": system.consul_members(),
            "swarm": {"state": swarm.get("LocalNodeState", ""), "nodes": swarm.get("Nodes")}}


def status_text(s: Settings) -> str:
    return json.dumps(status(s), indent=2)
