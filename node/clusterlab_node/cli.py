"""clusterlab-node network | start | status | health | register"""

import argparse
import concurrent.futures
import sys
from pathlib import Path

from . import agent, election, health, registrator, settings, system


def facts(s: settings.Settings) -> health.Facts:
    """Observed all at once: each observation waits for a daemon (Docker, avahi, Consul), and
    on a busy or emulated board one alone takes seconds."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=6) as pool:
        state = pool.submit(agent.status, s)
        addresses = pool.submit(system.addresses_of, s.vlan_interface)
        announced = pool.submit(system.browse)
        vlan_id = pool.submit(system.vlan_id_of, s.vlan_interface)
        dhcp_server_running = pool.submit(system.dhcp_server_running)
        consul_leader = pool.submit(system.consul_leader)
    state = state.result()
    return health.Facts(
        role=state["role"], vlan_id=vlan_id.result(), addresses=state["addresses"],
        dynamic=any(a.get("dynamic") for a in addresses.result()),
        dhcp_server_running=dhcp_server_running.result(),
        masters_seen=len(election.masters_of(announced.result(), s.name, s.vlan_interface)),
        consul_leader=consul_leader.result(), consul_members=state["consul_members"],
        swarm_state=state["swarm"]["state"], swarm_nodes=state["swarm"]["nodes"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clusterlab-node",
                                     description="Join this node to its ClusterLab cluster.")
    parser.add_argument("command", choices=["network", "start", "status", "health", "register"])
    parser.add_argument("--settings", type=Path, default=settings.default_path())
    args = parser.parse_args(argv)
    try:
        s = settings.load(args.settings)
        if args.command == "network":
            print(f"this node is the cluster's {agent.join_network(s)}")
            return 0
        if args.command == "start":
            print(f"{agent.start_services(s)}: Consul and Swarm are up")
            return 0
        if args.command == "register":
            registrator.run_forever()
        if args.command == "status":
            print(agent.status_text(s))
            return 0
        text, code = health.report(health.evaluate(facts(s), s.vlan_id, s.subnet,
                                                   s.master_address))
        print(text)
        return code
    except (settings.SettingsError, system.CommandError, OSError) as e:
        print(f"clusterlab-node: {e}", file=sys.stderr)
        return 1
