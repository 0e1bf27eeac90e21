"""What the agent does to the node and asks of it: links and addresses (iproute2, arping),
service discovery (avahi), DHCP (dnsmasq, networkd), Consul and Docker. Thin wrappers over the
commands; the decisions are elsewhere."""

import ipaddress
import json
import shutil
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

from . import election

RUNTIME = Path("/run/clusterlab")
STATE = Path("/var/lib/clusterlab")
AVAHI_SERVICE = Path("/etc/avahi/services/clusterlab.service")
AVAHI_CONFIG = Path("/etc/avahi/avahi-daemon.conf")
NETWORKD_VLAN = Path("/run/systemd/network/30-clusterlab-vlan.network")
CONSUL = "http://127.0.0.1:8500"


class CommandError(RuntimeError):
    pass


# No command may hold the agent or `health` for good: a daemon that stops answering (Docker,
# avahi) turns into a failed command, which the caller reports.
COMMAND_TIMEOUT = 120
TIMED_OUT = 124  # the exit status `timeout` gives a command it stopped


def run(*argv: str, check: bool = True,
        timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess:
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        result = subprocess.CompletedProcess(argv, TIMED_OUT, "",
                                             f"no answer within {timeout:.0f} s")
    if check and result.returncode != 0:
        raise CommandError(f"{' '.join(argv)} failed ({result.returncode}): "
                           f"{(result.stderr or result.stdout).strip()[-500:]}")
    return result


def log(message: str) -> None:
    print(message, flush=True)  # to the journal through the unit's stdout


# links and addresses

def wired_interface() -> str:
    """The first wired Ethernet port: a real device (not virtual), not wireless."""
    ports = sorted(p.name for p in Path("/sys/class/net").iterdir()
                   if (p / "device").exists() and not (p / "wireless").exists()
                   and (p / "type").read_text().strip() == "1")
    if not ports:
        raise CommandError("no wired network port found")
    return ports[0]


def vlan_up(parent: str, name: str, vlan_id: int) -> None:
    if run("ip", "link", "show", "dev", name, check=False).returncode != 0:
        run("ip", "link", "add", "link", parent, "name", name, "type", "vlan", "id", str(vlan_id))
    run("ip", "link", "set", "dev", name, "up")


def vlan_id_of(name: str) -> int | None:
    result = run("ip", "-d", "-j", "link", "show", "dev", name, check=False)
    if result.returncode != 0:
        return None
    info = json.loads(result.stdout)[0].get("linkinfo", {})
    return info.get("info_data", {}).get("id") if info.get("info_kind") == "vlan" else None


def addresses_of(name: str) -> list[dict]:
    result = run("ip", "-j", "-4", "addr", "show", "dev", name, check=False)
    entries = json.loads(result.stdout or "[]") if result.returncode == 0 else []
    # `ip -j` prints [] for a link without IPv4 addresses
    return entries[0].get("addr_info", []) if entries else []


def address_free(address: ipaddress.IPv4Address, interface: str) -> bool:
    """Duplicate address detection: nobody answers ARP for it."""
    return run("arping", "-D", "-q", "-I", interface, "-c", "2", "-w", "3", str(address),
               check=False).returncode == 0


def add_address(interface: str, address: ipaddress.IPv4Address, prefix: int) -> None:
    run("ip", "addr", "replace", f"{address}/{prefix}", "dev", interface)


def announce_address(interface: str, address: ipaddress.IPv4Address) -> None:
    """Gratuitous ARP: neighbours update the MAC they hold for the address."""
    run("arping", "-U", "-q", "-I", interface, "-c", "2", str(address), check=False)


def remove_address(interface: str, address: ipaddress.IPv4Address, prefix: int) -> None:
    run("ip", "addr", "del", f"{address}/{prefix}", "dev", interface, check=False)


def dhcp_client(interface: str, timeout: float = 120) -> ipaddress.IPv4Address:
    """Hand the VLAN to systemd-networkd for DHCP; wait for the lease."""
    NETWORKD_VLAN.parent.mkdir(parents=True, exist_ok=True)
    # the master's resolver answers .consul names only: other names keep using the LAN's
    NETWORKD_VLAN.write_text(f"[Match]\nName={interface}\n\n[Network]\nDHCP=ipv4\n"
                             "LinkLocalAddressing=no\nIPv6AcceptRA=no\n"
                             "Domains=~consul\nDNSDefaultRoute=no\n\n"
                             "[DHCPv4]\nUseGateway=no\nUseRoutes=no\nUseDomains=no\n")
    run("networkctl", "reload")
    run("networkctl", "reconfigure", interface)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dynamic = [a for a in addresses_of(interface) if a.get("dynamic")]
        if dynamic:
            return ipaddress.IPv4Address(dynamic[0]["local"])
        time.sleep(1)
    raise CommandError(f"no DHCP lease on {interface} within {timeout:.0f} s")


# discovery

def restrict_avahi(interface: str) -> None:
    """Announce and browse only on the cluster's VLAN, never on the LAN; start announcing
    nothing (a master's announcement left from before a reboot would make it find itself)."""
    AVAHI_SERVICE.unlink(missing_ok=True)
    lines = AVAHI_CONFIG.read_text().splitlines()
    lines = [line for line in lines if not line.lstrip("#").strip().startswith("allow-interfaces")]
    at = next(i for i, line in enumerate(lines) if line.strip() == "[server]") + 1
    lines.insert(at, f"allow-interfaces={interface}")
    AVAHI_CONFIG.write_text("\n".join(lines) + "\n")
    run("systemctl", "restart", "avahi-daemon.service")


def browse() -> list[election.Announcement]:
    # answers in seconds; one left waiting for a restarting avahi-daemon counts as hearing nobody
    result = run("avahi-browse", "--parsable", "--resolve", "--terminate", "--no-db-lookup",
                 election.SERVICE_TYPE, check=False, timeout=30)
    return election.parse_browse(result.stdout)


def publish(cluster: str, node_id: str, last_role: str, port: int, role: str) -> None:
    """Announce this node as master, or as a candidate for it, replacing what it announced."""
    AVAHI_SERVICE.write_text(
        '<?xml version="1.0" standalone="no"?>\n'
        '<!DOCTYPE service-group SYSTEM "avahi-service.dtd">\n'
        "<service-group>\n"
        f'  <name replace-wildcards="yes">ClusterLab {cluster} {role} on %h</name>\n'
        f"  <service>\n    <type>{election.SERVICE_TYPE}</type>\n    <port>{port}</port>\n"
        f"    <txt-record>cluster={cluster}</txt-record>\n"
        f"    <txt-record>role={role}</txt-record>\n"
        f"    <txt-record>id={node_id}</txt-record>\n"
        f"    <txt-record>was={last_role}</txt-record>\n  </service>\n</service-group>\n")
    run("systemctl", "reload-or-restart", "avahi-daemon.service")


def unpublish() -> None:
    if AVAHI_SERVICE.exists():
        AVAHI_SERVICE.unlink()
        run("systemctl", "reload-or-restart", "avahi-daemon.service")


# DHCP server and name service on the master

def dhcp_server(interface: str, master: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network,
                first: ipaddress.IPv4Address, last: ipaddress.IPv4Address) -> None:
    RUNTIME.mkdir(parents=True, exist_ok=True)
    (RUNTIME / "dnsmasq.conf").write_text(
        f"interface={interface}\nbind-interfaces\nexcept-interface=lo\n"
        f"listen-address={master}\n"
        "no-resolv\nno-hosts\n"
        # names ending in .consul are answered by Consul's DNS; nothing else leaves the VLAN
        "server=/consul/127.0.0.1#8600\n"
        f"dhcp-range={first},{last},{subnet.netmask},12h\n"
        "dhcp-authoritative\n"
        "dhcp-option=option:router\n"
        f"dhcp-option=option:dns-server,{master}\n"
        f"dhcp-leasefile={STATE / 'dhcp.leases'}\n")
    STATE.mkdir(parents=True, exist_ok=True)
    run("systemctl", "restart", "clusterlab-dhcp.service")


def dhcp_server_running() -> bool:
    return run("systemctl", "is-active", "--quiet", "clusterlab-dhcp.service",
               check=False).returncode == 0


# Consul and Docker

def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return run("docker", *args, check=check)


def consul_container(image: str, args: list[str]) -> None:
    """(Re)start the Consul container with args; its data lives on the host."""
    docker("rm", "--force", "consul", check=False)
    docker("run", "--detach", "--name", "consul", "--restart", "unless-stopped",
           "--network", "host", "--volume", f"{STATE / 'consul'}:/var/lib/consul",
           image, *args)


def forget_cluster_state() -> None:
    """Leave the swarm and drop Consul's data: both belong to the role this node had before."""
    docker("rm", "--force", "consul", check=False)
    docker("swarm", "leave", "--force", check=False)
    shutil.rmtree(STATE / "consul", ignore_errors=True)


def consul_get(path: str, timeout: float = 5) -> bytes | None:
    try:
        with urllib.request.urlopen(f"{CONSUL}{path}", timeout=timeout) as response:
            return response.read()
    except (urllib.error.URLError, OSError):
        return None


def consul_value(key_path: str) -> str | None:
    """A value of Consul's key-value store as text (None while Consul or the key is not there)."""
    raw = consul_get(f"{key_path}?raw")
    return raw.decode().strip() if raw else None


def consul_put(path: str, value: str) -> bool:
    """Whether Consul took it (the KV store answers true, the agent endpoints nothing)."""
    request = urllib.request.Request(f"{CONSUL}{path}", data=value.encode(), method="PUT")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.read().strip() in (b"true", b"")
    except (urllib.error.URLError, OSError):
        return False


def consul_members() -> dict[str, str]:
    """Node name -> status, from the local agent (serf status 1 is alive)."""
    raw = consul_get("/v1/agent/members")
    if not raw:
        return {}
    names = {1: "alive", 2: "leaving", 3: "left", 4: "failed"}
    return {m["Name"]: names.get(m["Status"], "unknown") for m in json.loads(raw)}


def consul_leader() -> str:
    raw = consul_get("/v1/status/leader")
    return json.loads(raw) if raw else ""


def swarm_info() -> dict:
    result = docker("info", "--format", "{{json .Swarm}}", check=False)
    return json.loads(result.stdout) if result.returncode == 0 and result.stdout.strip() else {}
