"""Who is master: decisions as plain functions of what the node saw, so they can be tested.

The procedure (run by the agent): listen for a master's announcement for a while (the discovery
timeout plus a wait that differs from node to node, longer for a node that was a worker before);
one seen: be a worker. None: announce a candidacy from the node's own probe address and listen
for rivals; the one that was master before, else the one with the lowest node id, takes the
master address and the others listen again, for its announcement as master. Candidates decide
before any of them holds the master address: two nodes holding the same address drop each
other's packets (Linux discards what arrives from one of its own addresses), so they could
never hear each other again.
"""

import dataclasses
import hashlib
import ipaddress

SERVICE_TYPE = "_clusterlab._tcp"
MAX_JITTER = 10.0  # seconds
FORMER_WORKER_GRACE = 120.0  # seconds


@dataclasses.dataclass(frozen=True)
class Announcement:
    """One resolved `_clusterlab._tcp` service, as avahi-browse -p -r prints it."""
    interface: str
    name: str
    address: str
    port: int
    txt: dict[str, str]

    @property
    def node_id(self) -> str:
        return self.txt.get("id", "")


def parse_browse(output: str) -> list[Announcement]:
    """The resolved IPv4 services in `avahi-browse --parsable --resolve --terminate` output:
    `=;IFACE;IPv4;NAME;TYPE;DOMAIN;HOST;ADDRESS;PORT;"k=v" "k=v"`. Names are escaped by avahi
    (\\032 for a space and so on); ours have none."""
    found = []
    for line in output.splitlines():
        fields = line.split(";", 9)
        if len(fields) < 10 or fields[0] != "=" or fields[2] != "IPv4" \
                or fields[4] != SERVICE_TYPE:
            continue
        txt = {}
        for item in _txt_items(fields[9]):
            key, _, value = item.partition("=")
            txt[key] = value
        try:
            port = int(fields[8])
        except ValueError:
            continue
        found.append(Announcement(fields[1], fields[3], fields[7], port, txt))
    return found


def _txt_items(text: str) -> list[str]:
    items, current, inside = [], [], False
    for char in text:
        if char == '"':
            if inside:
                items.append("".join(current))
                current = []
            inside = not inside
        elif inside:
            current.append(char)
    return items


def masters_of(announcements: list[Announcement], cluster: str, interface: str) -> list[Announcement]:
    """The announcements of masters of this cluster seen on the cluster's VLAN."""
    return _of_cluster(announcements, cluster, interface, ("master",))


def contenders_of(announcements: list[Announcement], cluster: str,
                  interface: str) -> list[Announcement]:
    """The masters and candidates of this cluster seen on the cluster's VLAN."""
    return _of_cluster(announcements, cluster, interface, ("master", "candidate"))


def _of_cluster(announcements: list[Announcement], cluster: str, interface: str,
                roles: tuple[str, ...]) -> list[Announcement]:
    return [a for a in announcements if a.interface == interface
            and a.txt.get("cluster") == cluster and a.txt.get("role") in roles]


def discovery_wait(timeout: float, node_id: str, last_role: str) -> float:
    """Seconds to listen for a master before claiming the role. The node that was master before
    listens the plain timeout, so that after a power cut it is master again; a new node adds its
    jitter; a former worker also gives the master time to come up (a slower card, a later
    plug) before it would take over."""
    if last_role == "master":
        return timeout
    wait = timeout + jitter(node_id)
    return wait + FORMER_WORKER_GRACE if last_role == "worker" else wait


def first_decision(masters: list[Announcement], my_id: str) -> str:
    """Before claiming: 'worker' when another node is master already, else 'claim' (this node's
    own announcement can only be a leftover from before it rebooted)."""
    return "worker" if any(m.node_id != my_id for m in masters) else "claim"


def wins_candidacy(contenders: list[Announcement], my_id: str, my_last_role: str) -> bool:
    """After standing as a candidate: whether this node ranks first among the contenders it
    heard. A master already announced ranks before any candidate; among candidates, the one that
    was master before (its Consul and Swarm hold the cluster's state), then the lowest id."""
    def rank(role: str, last_role: str, node_id: str) -> tuple[bool, bool, str]:
        return role != "master", last_role != "master", node_id
    rivals = [rank(c.txt.get("role", ""), c.txt.get("was", ""), c.node_id)
              for c in contenders if c.node_id and c.node_id != my_id]
    return all(rank("candidate", my_last_role, my_id) < rival for rival in rivals)


def jitter(node_id: str) -> float:
    """A wait before claiming that differs between nodes (derived from the node id, so that two
    nodes powered on together do not claim at the same moment)."""
    return int(hashlib.sha256(node_id.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF * MAX_JITTER


def probe_candidates(low: ipaddress.IPv4Address, high: ipaddress.IPv4Address,
                     node_id: str) -> list[ipaddress.IPv4Address]:
    """Every address of the probe range, starting at one chosen by the node id, so nodes booting
    together try different ones first."""
    size = int(high) - int(low) + 1
    start = int(hashlib.sha256(node_id.encode()).hexdigest()[:8], 16) % size
    return [ipaddress.IPv4Address(int(low) + (start + i) % size) for i in range(size)]


def in_swarm_of(swarm: dict, manager_id: str) -> bool:
    """Whether Docker's swarm state (`docker info` .Swarm) is an active membership of the swarm
    this manager leads (a node can still hold the swarm of a master that is gone)."""
    managers = {m.get("NodeID") for m in swarm.get("RemoteManagers") or []}
    return swarm.get("LocalNodeState") == "active" and manager_id in managers
