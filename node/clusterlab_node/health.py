"""`clusterlab-node health`: what the node observed, judged by plain functions into PASS/FAIL
lines. Every check compares an observation with what the node's role requires, so each can
fail."""

import dataclasses
import ipaddress


@dataclasses.dataclass(frozen=True)
class Facts:
    """What the node observed about itself and the cluster."""
    role: str  # "master", "worker" or "" (the agent has not finished)
    vlan_id: int | None  # the VLAN interface's id, None when it is missing
    addresses: list[str]  # IPv4 addresses on the VLAN interface, with prefix
    dynamic: bool  # whether the VLAN address came by DHCP
    dhcp_server_running: bool
    masters_seen: int  # masters of this cluster announced on the VLAN
    consul_leader: str  # empty when Consul has no leader or does not answer
    consul_members: dict[str, str]  # node name -> status ("alive", "failed", "left")
    swarm_state: str  # docker info's Swarm.LocalNodeState
    swarm_nodes: int | None  # nodes the swarm has (known on managers only)


@dataclasses.dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


def evaluate(facts: Facts, wanted_vlan: int, subnet: ipaddress.IPv4Network,
             master_address: ipaddress.IPv4Address) -> list[Check]:
    in_subnet = [a for a in facts.addresses if ipaddress.IPv4Interface(a).ip in subnet]
    checks = [
        Check("role", facts.role in ("master", "worker"), facts.role or "not decided"),
        Check("vlan", facts.vlan_id == wanted_vlan,
              f"id {facts.vlan_id}" if facts.vlan_id is not None else "no VLAN interface"),
    ]
    if facts.role == "master":
        has_master = any(ipaddress.IPv4Interface(a).ip == master_address for a in in_subnet)
        checks += [Check("address", has_master, ", ".join(in_subnet) or "none"),
                   Check("dhcp server", facts.dhcp_server_running,
                         "running" if facts.dhcp_server_running else "not running")]
    else:
        checks.append(Check("address", bool(in_subnet) and facts.dynamic,
                            (", ".join(in_subnet) or "none")
                            + (" (DHCP)" if facts.dynamic else " (not from DHCP)")))
    checks.append(Check("discovery", facts.masters_seen == 1,
                        f"{facts.masters_seen} master(s) announced on the VLAN"))
    dead = sorted(name for name, status in facts.consul_members.items() if status != "alive")
    checks.append(Check("consul", bool(facts.consul_leader) and bool(facts.consul_members)
                        and not dead,
                        f"leader {facts.consul_leader or 'none'}, "
                        f"{len(facts.consul_members) - len(dead)} alive"
                        + (f", not alive: {', '.join(dead)}" if dead else "")))
    checks.append(Check("swarm", facts.swarm_state == "active", facts.swarm_state or "unknown"))
    if facts.role == "master":
        alive = len(facts.consul_members) - len(dead)
        checks.append(Check("swarm nodes", facts.swarm_nodes == alive,
                            f"{facts.swarm_nodes} in the swarm, {alive} Consul members alive"))
    return checks


def report(checks: list[Check]) -> tuple[str, int]:
    """The lines to print and the exit status (1 when any check failed)."""
    lines = [f"{'PASS' if c.passed else 'FAIL'} {c.name}: {c.detail}" for c in checks]
    return "\n".join(lines), 0 if all(c.passed for c in checks) else 1
