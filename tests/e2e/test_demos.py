"""The paper's two use cases, run on the master with clusterlab-demo as the README says."""

import collections
import time

import pytest

pytestmark = pytest.mark.e2e
# n requests to HAProxy on the master, through the VLAN; a failed one prints "error: …"
ASK_MASTER = ("python3 -c \"import urllib.request as u\n"
              "for _ in range({n}):\n"
              "    try:\n"
              "        print(u.urlopen('http://192.168.200.1/', timeout=10).read().decode().strip())\n"
              "    except OSError as e:\n"
              "        print('error:', e)\"")


def test_use_case_a_a_worker_fetches_the_masters_page_by_name_over_the_overlay(cluster):
    master = cluster.master
    output = master.sh("sudo clusterlab-demo webserver", timeout=1200)
    server = master.sh("sudo docker ps --filter label=com.docker.swarm.service.name=webserver "
                       "--format '{{.ID}}'")
    assert output.splitlines()[-1] == server, output  # the page is the server's host name
    fetcher = next(line for line in output.splitlines() if line.startswith("fetch:"))
    assert any(f" on {w.hostname} " in fetcher for w in cluster.workers), output
    master.sh("sudo clusterlab-demo stop webserver", timeout=600)
    assert master.run("sudo docker service inspect webserver").returncode != 0
    assert master.run("sudo docker network inspect demo").returncode != 0


def answers(node, n: int) -> list[str]:
    return node.sh(ASK_MASTER.format(n=n), timeout=300).splitlines()


def test_use_case_b_haproxy_balances_round_robin_over_ten_and_follows_scaling(cluster):
    master, client = cluster.master, cluster.workers[0]
    master.sh("sudo clusterlab-demo loadbalancing", timeout=1200)
    start = time.monotonic()
    master.sh("sudo clusterlab-demo scale 10", timeout=1200)
    deadline = time.monotonic() + 600
    while len({a for a in answers(client, 30) if not a.startswith("error:")}) < 10:
        assert time.monotonic() < deadline, "not all 10 web containers answered within 600 s"
        time.sleep(3)
    cluster.figures["scale to 10 until all 10 answer"] = time.monotonic() - start

    sequence = answers(client, 20)
    counts = collections.Counter(sequence)
    assert len(counts) == 10 and set(counts.values()) == {2}, sequence
    assert sequence[:10] == sequence[10:], sequence  # the same order, round after round

    master.sh("sudo clusterlab-demo scale 3", timeout=1200)
    deadline = time.monotonic() + 30
    seen = []
    while len(set(seen[-12:])) != 3:
        assert time.monotonic() < deadline, f"still not 3 web containers after 30 s: {seen}"
        seen += answers(client, 12)
    errors = [answer for answer in seen if answer.startswith("error:")]
    assert not errors, f"requests failed while scaling down: {errors}"
    stats = master.sh("python3 -c \"import urllib.request as u; "
                      "print(u.urlopen('http://127.0.0.1:8404/;csv', timeout=10).read().decode())\"")
    assert sum(1 for line in stats.splitlines() if line.startswith("web,web") and ",UP," in line) == 3
    master.sh("sudo clusterlab-demo stop loadbalancing", timeout=600)
