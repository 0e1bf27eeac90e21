"""clusterlab-demo: the two use cases of the Hypriot Cluster Lab paper, on today's Swarm mode.

webserver      a web server on the master, fetched by name by a container on a worker, through
               the overlay network `demo`
loadbalancing  HAProxy on the master (port 80, statistics on 8404) over web containers on the
               workers, found through Consul
scale N        the load-balanced web service to N containers
stop DEMO      remove what the demo made
"""

import argparse
import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

from clusterlab_node import settings as node_settings

DEMOS = Path("/usr/share/clusterlab/demos")
STACK = "lb"
WAIT = 600  # seconds: emulated or busy boards start containers slowly


class DemoError(RuntimeError):
    pass


def docker(*args: str, env: dict | None = None) -> str:
    result = subprocess.run(["docker", *args], capture_output=True, text=True,
                            env={**os.environ, **(env or {})})
    if result.returncode != 0:
        raise DemoError(f"docker {shlex.join(args)} failed: {result.stderr.strip()[-500:]}")
    return result.stdout.strip()


def require_manager() -> None:
    swarm = json.loads(docker("info", "--format", "{{json .Swarm}}") or "{}")
    if not swarm.get("ControlAvailable"):
        raise DemoError("run clusterlab-demo on the cluster's master (the Swarm manager); "
                        "`clusterlab-node status` shows which node that is")


def wait_for(check, what: str):
    deadline = time.monotonic() + WAIT
    while not (result := check()):
        if time.monotonic() > deadline:
            raise DemoError(f"gave up waiting for {what} after {WAIT} s")
        time.sleep(2)
    return result


def service_states(service: str) -> list[str]:
    """The current state of each task of the service, e.g. ['Running 3 seconds ago']."""
    return docker("service", "ps", service, "--filter", "desired-state=running",
                  "--format", "{{.CurrentState}}").splitlines()


def service_node(service: str) -> str:
    return docker("service", "ps", service, "--format", "{{.Node}}").splitlines()[0]


# use case A

def exists(kind: str, name: str) -> bool:
    """Whether Docker has the service or network of that exact name."""
    return subprocess.run(["docker", kind, "inspect", name],
                          capture_output=True).returncode == 0


def webserver(s: node_settings.Settings) -> None:
    """Run again, it keeps the web server and fetches once more."""
    web_image = s.images["web"]
    if not exists("network", "demo"):
        docker("network", "create", "--driver", "overlay", "--attachable", "demo")
    if not exists("service", "webserver"):
        docker("service", "create", "--detach", "--name", "webserver", "--network", "demo",
               "--constraint", "node.role == manager", web_image)
    if exists("service", "fetch"):
        docker("service", "rm", "fetch")
    wait_for(lambda: any(s.startswith("Running") for s in service_states("webserver")),
             "the web server to run")
    print(f"webserver: service on {service_node('webserver')} (the master), network demo")
    # the web image's busybox has no applet links: applets are called through busybox
    fetch = "for i in $(busybox seq 30); do " \
            "busybox wget -qO- http://webserver/index.html && exit 0; busybox sleep 2; " \
            "done; exit 1"
    docker("service", "create", "--detach", "--name", "fetch", "--network", "demo",
           "--mode", "replicated-job", "--constraint", "node.role == worker",
           "--entrypoint", "busybox", web_image, "sh", "-c", fetch)
    states = wait_for(lambda: [s for s in docker("service", "ps", "fetch", "--format",
                                                 "{{.CurrentState}}").splitlines()
                               if s.startswith(("Complete", "Failed"))], "the fetch to finish")
    page = docker("service", "logs", "--raw", "fetch")
    print(f"fetch: a container on {service_node('fetch')} got http://webserver/index.html:")
    print(page)
    if not states[0].startswith("Complete"):
        raise DemoError("the container on the worker could not fetch the page")


# use case B

def loadbalancing(s: node_settings.Settings) -> None:
    directory = DEMOS / "loadbalancing"
    docker("stack", "deploy", "--compose-file", str(directory / "stack.yml"), STACK,
           env={"CONSUL_DNS": f"{s.master_address}:8600", "WEB_IMAGE": s.images["web"],
                "HAPROXY_IMAGE": s.images["haproxy"]})
    wait_for(lambda: any(st.startswith("Running") for st in service_states(f"{STACK}_haproxy")),
             "HAProxy to run")
    print(f"HAProxy answers on http://{s.master_address}/ "
          f"(statistics: http://{s.master_address}:8404/)")
    print("scale the web containers with: clusterlab-demo scale 10")


def scale(replicas: int) -> None:
    docker("service", "scale", "--detach", f"{STACK}_web={replicas}")
    wait_for(lambda: sum(s.startswith("Running") for s in service_states(f"{STACK}_web"))
             == replicas, f"{replicas} web containers to run")
    print(f"{replicas} web containers running")


def network_removed() -> bool:
    """Ask for the demo network to go; it does once the services' containers have stopped."""
    subprocess.run(["docker", "network", "rm", "demo"], capture_output=True)
    return not exists("network", "demo")


def stop(demo: str) -> None:
    if demo == "webserver":
        for service in ("fetch", "webserver"):
            subprocess.run(["docker", "service", "rm", service], capture_output=True)
        wait_for(network_removed, "the network demo to go")
    else:
        docker("stack", "rm", STACK)
    print(f"{demo} stopped")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="clusterlab-demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("webserver", help="use case A: a web server fetched over an overlay")
    commands.add_parser("loadbalancing", help="use case B: HAProxy over web containers")
    scaling = commands.add_parser("scale", help="scale the load-balanced web containers")
    scaling.add_argument("replicas", type=int)
    stopping = commands.add_parser("stop", help="remove what a demo made")
    stopping.add_argument("demo", choices=["webserver", "loadbalancing"])
    args = parser.parse_args(argv)
    try:
        require_manager()
        s = node_settings.load(node_settings.default_path())
        if args.command == "webserver":
            webserver(s)
        elif args.command == "loadbalancing":
            loadbalancing(s)
        elif args.command == "scale":
            scale(args.replicas)
        else:
            stop(args.demo)
        return 0
    except (DemoError, node_settings.SettingsError) as e:
        print(f"clusterlab-demo: {e}", file=sys.stderr)
        return 1
