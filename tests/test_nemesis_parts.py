"""The pieces nemeses are built from, without a cluster: rule specs, clock file text, link sets,
loss bands, and the merging of in-process fault layers (against a recording HTTP server)."""
from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from harness.backends.base import Node
from nemeses import firewall
from nemeses.transport_faults import TransportFaultBook
from targets.adapter import AdminError
from targets.dynamo.admin import DynamoAdmin
from nemeses.clock import faketime_text
from nemeses.link import binomial_band, link_pairs

NODES = {f"n{i}": Node(f"n{i}", f"127.0.0.{10 + i}", 7000, "/d") for i in range(1, 4)}


def test_drop_rule_specs_match_what_iptables_lists() -> None:
    rule = firewall.DropRule("n1", "n2")
    spec = rule.spec(object(), NODES)   # a backend without source_match: the sender's address
    assert spec == ["-s", "127.0.0.11", "-d", "127.0.0.12", "-m", "comment", "--comment", firewall.TAG, "-j", "DROP"]
    listed = f"-A DH-1 -s 127.0.0.11/32 -d 127.0.0.12/32 -m comment --comment {firewall.TAG} -j DROP"
    assert firewall._same_rule(listed, " ".join(spec))
    assert not firewall._same_rule(listed.replace(".12/", ".13/"), " ".join(spec))
    lossy = firewall.DropRule("n1", "n2", probability=0.2)
    listed_lossy = ("-A DH-1 -s 127.0.0.11/32 -d 127.0.0.12/32 -m statistic --mode random --probability "
                    f"0.20000000019 -m comment --comment {firewall.TAG} -j DROP")
    assert firewall._same_rule(listed_lossy, " ".join(lossy.spec(object(), NODES)))
    assert not firewall._same_rule(listed_lossy, " ".join(spec)), "a loss rule is not the partition rule"
    assert lossy.to_json() == {"from": "n1", "to": "n2", "probability": 0.2}


def test_drop_rules_match_the_senders_cgroup_where_the_backend_gives_one() -> None:
    class CgroupBackend:
        def source_match(self, node: str) -> list[str]:
            return ["-m", "cgroup", "--path", f"dynharness/DH-1/{node}"]

    spec = firewall.DropRule("n1", "n2").spec(CgroupBackend(), NODES)
    assert spec[:6] == ["-m", "cgroup", "--path", "dynharness/DH-1/n1", "-d", "127.0.0.12"]
    listed = (f"-A DH-1 -d 127.0.0.12/32 -m cgroup --path dynharness/DH-1/n1 -m comment --comment {firewall.TAG} "
              "-j DROP")
    assert firewall._same_rule(listed, " ".join(spec))
    assert not firewall._same_rule(listed.replace("DH-1/n1", "DH-1/n3"), " ".join(spec))


@pytest.mark.parametrize("offset, text", [(30, b"+30.000s\n"), (-0.25, b"-0.250s\n"), (0.0004, b"+0\n"),
                                          (-3600, b"-3600.000s\n"), (0, b"+0\n")])
def test_clock_file_text_uses_seconds_never_ms(offset: float, text: bytes) -> None:
    assert faketime_text(offset) == text


def test_link_pairs_cover_both_directions_of_every_chosen_link() -> None:
    assert link_pairs(["n1"], ["n1", "n2", "n3"]) == [("n1", "n2"), ("n1", "n3"), ("n2", "n1"), ("n3", "n1")]
    assert len(link_pairs(["n1", "n2", "n3"], ["n1", "n2", "n3"])) == 6


def test_binomial_band() -> None:
    lo, hi = binomial_band(160, 0.36)
    assert lo < 0.36 * 160 < hi and lo > 20 and hi < 100
    assert binomial_band(100, 0.0) == (0.0, 0.5)


class Recorder(BaseHTTPRequestHandler):
    log: list = []

    def _answer(self) -> None:
        n = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(n)) if n else None
        Recorder.log.append((self.server.server_address[0], self.command, body))
        status = 500 if body and body.get("delay_ms") == 666 else 200
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b"{}")

    do_POST = do_DELETE = _answer

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def fake_nodes():
    servers, nodes = [], []
    for i, host in enumerate(("127.0.0.51", "127.0.0.52", "127.0.0.53"), start=1):
        srv = HTTPServer((host, 0), Recorder)
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        nodes.append(Node(f"n{i}", host, srv.server_address[1], "/d"))
    Recorder.log = []
    yield nodes
    for srv in servers:
        srv.shutdown()
        srv.server_close()


def test_fault_layers_merge_per_node_and_heal_separately(fake_nodes) -> None:
    book = TransportFaultBook()
    book.bind(fake_nodes, DynamoAdmin())
    book.set_layer("partition", {"n1": {"drop": ["n3"]}, "n3": {"drop": ["n1"]}})
    assert sorted((h, m, b) for h, m, b in Recorder.log) == [
        ("127.0.0.51", "POST", {"drop": ["n3"]}), ("127.0.0.53", "POST", {"drop": ["n1"]})]
    Recorder.log = []
    book.set_layer("latency", {"n1": {"delay_ms": 50, "jitter_ms": 5, "peers": ["n2", "n3"]}})
    assert Recorder.log == [("127.0.0.51", "POST", {"drop": ["n3"], "delay_ms": 50, "jitter_ms": 5,
                                                    "peers": ["n2", "n3"]})], "latency keeps the partition's drop"
    Recorder.log = []
    book.clear_layer("partition")
    assert sorted(Recorder.log, key=lambda x: x[0]) == [
        ("127.0.0.51", "POST", {"delay_ms": 50, "jitter_ms": 5, "peers": ["n2", "n3"]}),
        ("127.0.0.53", "DELETE", None)], "healing the partition leaves the latency"
    Recorder.log = []
    book.set_layer("loss", {"n1": {"loss": 0.2, "peers": ["n2"]}})
    assert Recorder.log[0][2] == {"loss": 0.2, "delay_ms": 50, "jitter_ms": 5, "peers": ["n2", "n3"]}
    assert book.clear_all() == []
    assert {h for h, m, _ in Recorder.log[1:] if m == "DELETE"} == {"127.0.0.51", "127.0.0.52", "127.0.0.53"}


def test_a_node_that_refuses_is_reported_and_retried(fake_nodes) -> None:
    book = TransportFaultBook(fake_nodes, DynamoAdmin())
    with pytest.raises(AdminError, match="n2 POST /admin/faults: HTTP 500"):
        book.set_layer("latency", {"n2": {"delay_ms": 666, "peers": ["n1"]}})
    Recorder.log = []
    book.set_layer("latency", {"n2": {"delay_ms": 10, "peers": ["n1"]}})
    assert Recorder.log == [("127.0.0.52", "POST", {"delay_ms": 10, "jitter_ms": 0, "peers": ["n1"]})]
