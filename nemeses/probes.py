"""Probes: checks that a fault really took effect (or really went away).

Every nemesis reports its probe in the history; a fault whose probe fails is
recorded as failed, never as done. The probes here measure the thing the
fault is about, from outside the harness's own bookkeeping:

* :func:`link_status`: a real TCP connection from node A's address to node
  B's port. A DROP rule makes it time out; a refused or accepted connection
  means packets flow. On the local backend the harness binds the socket to
  A's loopback address; elsewhere the same check runs *on* node A through
  ``backend.run`` (a small python3 script).
* :func:`wait_health`: the target's ``NodeAdmin.health``, a real request through the node's
  serving path (a paused node completes TCP handshakes in the kernel but never answers).
* :func:`clock_offset`: the node's own clock (``NodeAdmin.clock``, targets with the ``clock``
  capability) minus the harness's clock at the request's midpoint, best of a few samples.
* ``NodeAdmin.peer_probe`` (targets with ``transport-faults``): a request the node treats as
  coming from a peer, to see the node's in-process transport faults act on it.

Every probe that talks to a node goes through the target's admin, so it means the same on
any store.

Checks run side by side (:func:`nemeses.fanout.in_parallel`, which says why), each with its
own timeout.
"""
from __future__ import annotations

import errno
import json
import socket
import time
from typing import Mapping, Sequence

from harness.backends.base import Backend, Node
from nemeses import firewall
from nemeses.base import Probe
from nemeses.fanout import in_parallel
from targets.adapter import AdminError, NodeAdmin, Target

CUT, FLOWS = "cut", "flows"

#: Run on a node when the harness cannot bind that node's address itself: connects to every
#: host:port argument (repeats allowed), 32 at a time, and prints the results in argument order.
_REMOTE_SCRIPT = r"""
import json, socket, sys, threading
src, timeout, targets = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
out = [None] * len(targets)
gate = threading.Semaphore(32)
def probe(i, t):
    host, port = t.rsplit(":", 1)
    s = socket.socket(); s.settimeout(timeout)
    with gate:
        try:
            try: s.bind((src, 0))
            except OSError: pass
            s.connect((host, int(port))); out[i] = "connected"
        except socket.timeout: out[i] = "timeout"
        except ConnectionRefusedError: out[i] = "refused"
        except OSError as e: out[i] = "error:" + str(e)
        finally: s.close()
ts = [threading.Thread(target=probe, args=(i, t)) for i, t in enumerate(targets)]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(out))
"""


def tcp_connect(src_host: str, dst_host: str, port: int, timeout: float) -> str:
    """Connect from ``src_host`` to dst: "connected" | "refused" | "timeout" | "nobind" | "error:...".

    "nobind" means this machine does not own ``src_host`` (probe on the node instead).
    """
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        try:
            s.bind((src_host, 0))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                return "nobind"
            raise
        s.connect((dst_host, port))
        return "connected"
    except socket.timeout:
        return "timeout"
    except ConnectionRefusedError:
        return "refused"
    except OSError as e:
        return f"error:{e}"
    finally:
        s.close()


def classify(result: str) -> str:
    """CUT when packets do not get through (timeout), FLOWS when they do (connected or refused)."""
    return CUT if result == "timeout" else FLOWS if result in ("connected", "refused") else result


def connect_all(backend: Backend, nodes: Mapping[str, Node], pairs: Sequence[tuple[str, str]],
                timeout: float = 1.0) -> list[str]:
    """Raw TCP-connect result for each (src, dst) pair, in order (repeats allowed), all in parallel.

    From this host bound to src's address when it owns it (local backend without node cgroups);
    otherwise one ``backend.run`` on each source node runs the same checks there (in its cgroup
    on the local backend, so the node's rules apply to the probe).
    """
    if not pairs:
        return []
    if "node-cgroups" in backend.capabilities:  # rules match the node's processes: probe from inside them
        results = ["nobind"] * len(pairs)
    else:
        results = in_parallel(lambda p: tcp_connect(nodes[p[0]].host, nodes[p[1]].host, nodes[p[1]].port, timeout),
                              pairs)
    remote = sorted({p[0] for p, r in zip(pairs, results) if r == "nobind"})

    def on_node(src: str) -> tuple[list[int], list[str]]:
        idx = [i for i, p in enumerate(pairs) if p[0] == src]
        argv = ["python3", "-c", _REMOTE_SCRIPT, nodes[src].host, str(timeout),
                *[f"{nodes[pairs[i][1]].host}:{nodes[pairs[i][1]].port}" for i in idx]]
        try:
            res = backend.run(src, argv, timeout=timeout * (len(idx) // 32 + 2) + 15).check()
            got = json.loads(res.stdout.strip().splitlines()[-1])
            if len(got) != len(idx):
                raise ValueError(f"{len(got)} results for {len(idx)} probes")
        except (RuntimeError, ValueError, IndexError, OSError) as e:
            got = [f"error:probe on {src} failed: {e}"] * len(idx)
        return idx, got

    for idx, got in in_parallel(on_node, remote):  # every source node at once: each waits its timeout
        for i, r in zip(idx, got):
            results[i] = r
    return results


def link_status(backend: Backend, nodes: Mapping[str, Node], pairs: Sequence[tuple[str, str]],
                timeout: float = 1.0) -> dict[tuple[str, str], str]:
    """(src, dst) -> raw result of one TCP connect from src's address to dst's port."""
    pairs = list(dict.fromkeys(pairs))
    return dict(zip(pairs, connect_all(backend, nodes, pairs, timeout)))


def wait_health(admin: NodeAdmin, node: Node, want: bool, deadline: float,
                timeout: float = 1.0) -> tuple[bool, str, float]:
    """Poll health until it equals ``want`` or ``deadline`` (monotonic) passes: (reached, last detail, seconds)."""
    t0 = time.monotonic()
    while True:
        ok, why = admin.health(node, timeout=timeout)
        if ok == want or time.monotonic() >= deadline:
            return ok == want, why, time.monotonic() - t0
        time.sleep(0.05)


def clock_offset(admin: NodeAdmin, node: Node, samples: int = 3, timeout: float = 2.0) -> tuple[float, float]:
    """(node clock - harness clock, RTT) in seconds, from the sample with the smallest RTT.

    Raises AdminError when the node does not answer.
    """
    best: tuple[float, float] | None = None
    for _ in range(samples):
        t0 = time.time()
        node_time = admin.clock(node, timeout=timeout)
        t1 = time.time()
        rtt = t1 - t0
        sample = (node_time - (t0 + t1) / 2, rtt)
        if best is None or rtt < best[1]:
            best = sample
    assert best is not None
    return best


def verify_healed(backend: Backend, target: Target, nodes: Sequence[Node], *,
                  clock_tolerance: float = 0.25) -> Probe:
    """After a heal: every node runs and answers, no nemesis rule is left, no clock is skewed.

    Clock offsets are compared with the harness's clock (same host or
    NTP-synced hosts); faketime files are also read back when the backend can.
    """
    def node_state(node: Node) -> tuple[list[str], dict[str, object]]:
        if not backend.is_running(node.name):
            return [f"{node.name} is not running"], {}
        ok, why = target.admin.health(node, timeout=2.0)
        if not ok:
            return [f"{node.name} does not answer health: {why}"], {}
        if "faketime" in backend.capabilities and "clock" in target.capabilities and node.clock_file:
            try:
                off, rtt = clock_offset(target.admin, node)
            except AdminError as e:
                return [str(e)], {}
            skewed = [f"{node.name} clock is off by {off * 1000:+.0f} ms"] if abs(off) > clock_tolerance + rtt else []
            return skewed, {f"{node.name}_clock_offset_ms": round(off * 1000, 1)}
        return [], {}

    problems: list[str] = []
    meas: dict[str, object] = {}
    for found, measured in in_parallel(node_state, list(nodes)):
        problems += found
        meas.update(measured)
    if "iptables" in backend.capabilities and backend.firewall_chain:
        listed = in_parallel(lambda n: firewall.list_rules(backend, n.name), list(nodes))
        left = sorted({line for lines in listed for line in lines if firewall.TAG in line})
        meas["iptables_rules_left"] = len(left)
        if left:
            problems.append(f"{len(left)} nemesis rule(s) left in {backend.firewall_chain}")

    def faults_of(node: Node) -> object:
        try:
            return target.admin.faults(node, timeout=2.0)
        except AdminError:
            return None

    held = in_parallel(faults_of, list(nodes)) if "transport-faults" in target.capabilities else []
    faults_left = {node.name: got for node, got in zip(nodes, held)
                   if isinstance(got, dict) and (got.get("drop") or got.get("loss") or got.get("delay_ms")
                                                 or got.get("jitter_ms"))}
    if faults_left:
        problems.append(f"in-process faults left on {', '.join(sorted(faults_left))}")
    if problems:
        return Probe(False, "; ".join(problems), meas)
    return Probe(True, f"{len(nodes)} node(s) running and answering, no rule, no in-process fault, no clock skew", meas)
