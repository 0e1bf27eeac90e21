"""clusterlab-node network | start | status | health | register"""

import argparse
import sys
from pathlib import Path

from . import agent, election, health, registrator, settings, system


def facts(s: settings.Settings) -> health.Facts:
    state = agent.status(s)
    addresses = system.addresses_of(s.vlan_interface)
    masters = election.masters_of(system.browse(), s.name, s.vlan_interface)
    return health.Facts(
        role=state["role"], vlan_id=system.vlan_id_of(s.vlan_interface),
        addresses=state["addresses"], dynamic=any(a.get("dynamic") for a in addresses),
        dhcp_server_running=system.dhcp_server_running(), masters_seen=len(masters),
        consul_leader=system.consul_leader(), consul_members=state["consul_members"],
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
