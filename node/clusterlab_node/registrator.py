"""Containers announce themselves in Consul: `clusterlab-node register` keeps the local Consul
agent's services equal to the running containers that carry the label
`clusterlab.consul.service` (service name) and optionally `clusterlab.consul.port` (default 80),
at the container's address on its overlay network. Backends then find each other through
Consul (DNS SRV `_NAME._tcp.service.consul`) as containers come and go."""

import dataclasses
import http.client
import json
import socket
import time
import urllib.parse

from . import system

SERVICE_LABEL = "clusterlab.consul.service"
PORT_LABEL = "clusterlab.consul.port"
ID_PREFIX = "container-"
POLL = 2  # seconds: a container gone is deregistered within this


@dataclasses.dataclass(frozen=True)
class Registration:
    id: str
    name: str
    address: str
    port: int

    def body(self) -> dict:
        return {"ID": self.id, "Name": self.name, "Address": self.address, "Port": self.port,
                "Meta": {"container": self.id.removeprefix(ID_PREFIX)}}


def wanted(containers: list[dict]) -> dict[str, Registration]:
    """What should be registered, from the Docker API's container list: each labelled container
    at its address on the first network it has beside the swarm's ingress."""
    found = {}
    for container in containers:
        labels = container.get("Labels") or {}
        name = labels.get(SERVICE_LABEL)
        networks = (container.get("NetworkSettings") or {}).get("Networks") or {}
        addresses = [networks[n].get("IPAddress") for n in sorted(networks) if n != "ingress"]
        addresses = [a for a in addresses if a]
        port = labels.get(PORT_LABEL, "80")
        if not name or not addresses or not port.isdigit():
            continue
        registration = Registration(ID_PREFIX + container["Id"][:12], name, addresses[0],
                                    int(port))
        found[registration.id] = registration
    return found


def changes(registered: dict[str, dict], want: dict[str, Registration]):
    """(registrations to make, service ids to remove): only services this module made."""
    ours = {sid: s for sid, s in registered.items() if sid.startswith(ID_PREFIX)}
    add = [r for sid, r in want.items()
           if sid not in ours or (ours[sid].get("Address"), ours[sid].get("Port"))
           != (r.address, r.port)]
    remove = sorted(sid for sid in ours if sid not in want)
    return add, remove


class _DockerSocket(http.client.HTTPConnection):
    def __init__(self, path: str = "/run/docker.sock"):
        super().__init__("localhost", timeout=10)
        self.path = path

    def connect(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.path)


def running_containers() -> list[dict]:
    query = urllib.parse.urlencode({"filters": json.dumps({"label": [SERVICE_LABEL]})})
    connection = _DockerSocket()
    try:
        connection.request("GET", f"/containers/json?{query}")
        response = connection.getresponse()
        if response.status != 200:
            raise system.CommandError(f"Docker API: {response.status} {response.reason}")
        return json.loads(response.read())
    finally:
        connection.close()


def sync_once() -> None:
    raw = system.consul_get("/v1/agent/services")
    if raw is None:
        return  # Consul is not up (yet): the next round tries again
    add, remove = changes(json.loads(raw), wanted(running_containers()))
    for registration in add:
        if system.consul_put("/v1/agent/service/register", json.dumps(registration.body())):
            system.log(f"registered {registration.name} at "
                       f"{registration.address}:{registration.port}")
    for service_id in remove:
        if system.consul_put(f"/v1/agent/service/deregister/{service_id}", ""):
            system.log(f"deregistered {service_id}")


def run_forever() -> None:
    while True:
        try:
            sync_once()
        except (OSError, system.CommandError, ValueError) as e:
            system.log(f"registration round failed: {e}")
        time.sleep(POLL)
