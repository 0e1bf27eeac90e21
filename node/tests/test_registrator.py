"""Which containers the node registers with Consul, and what changes a round makes."""

from clusterlab_node import registrator


def container(cid: str, labels: dict, networks: dict) -> dict:
    return {"Id": cid * 8, "Labels": labels,
            "NetworkSettings": {"Networks": {n: {"IPAddress": a} for n, a in networks.items()}}}


WEB = {"clusterlab.consul.service": "web"}


def test_a_labelled_container_is_wanted_at_its_overlay_address_not_ingress():
    want = registrator.wanted([container("abcdef", WEB, {"ingress": "10.0.0.5",
                                                         "lb_lb": "10.0.1.7"})])
    assert list(want.values()) == [registrator.Registration("container-abcdefabcdef", "web",
                                                            "10.0.1.7", 80)]


def test_the_port_label_is_used_and_a_bad_one_skips_the_container():
    good = container("aaaaaa", {**WEB, "clusterlab.consul.port": "8080"}, {"n": "10.0.1.2"})
    bad = container("bbbbbb", {**WEB, "clusterlab.consul.port": "http"}, {"n": "10.0.1.3"})
    assert [r.port for r in registrator.wanted([good, bad]).values()] == [8080]


def test_containers_without_the_label_or_an_address_are_not_wanted():
    assert registrator.wanted([container("cccccc", {}, {"n": "10.0.1.4"}),
                               container("dddddd", WEB, {"n": ""})]) == {}


def test_a_round_adds_the_new_removes_the_gone_and_leaves_other_services_alone():
    want = registrator.wanted([container("aaaaaa", WEB, {"n": "10.0.1.2"}),
                               container("bbbbbb", WEB, {"n": "10.0.1.3"})])
    registered = {
        "container-aaaaaaaaaaaa": {"Address": "10.0.1.2", "Port": 80},  # unchanged
        "container-999999999999": {"Address": "10.0.1.9", "Port": 80},  # container gone
        "consul-ui": {"Address": "", "Port": 8500},  # registered by someone else
    }
    add, remove = registrator.changes(registered, want)
    assert [r.id for r in add] == ["container-bbbbbbbbbbbb"]
    assert remove == ["container-999999999999"]


def test_a_container_whose_address_changed_is_registered_again():
    want = registrator.wanted([container("aaaaaa", WEB, {"n": "10.0.1.5"})])
    add, remove = registrator.changes(
        {"container-aaaaaaaaaaaa": {"Address": "10.0.1.2", "Port": 80}}, want)
    assert [r.address for r in add] == ["10.0.1.5"] and remove == []
