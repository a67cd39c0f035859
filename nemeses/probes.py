"""Probes: checks that a fault really took effect (or really went away).

Every nemesis reports its probe in the history; a fault whose probe fails is
recorded as failed, never as done. The probes here measure the thing the
fault is about, from outside the harness's own bookkeeping:

* :func:`link_status`: a real TCP connection from node A's address to node
  B's port. A DROP rule makes it time out; a refused or accepted connection
  means packets flow. On the local backend the harness binds the socket to
  A's loopback address; elsewhere the same check runs *on* node A through
  ``backend.run`` (a small python3 script).
* :func:`health`: ``GET /admin/health`` through the node's event loop (a
  paused node completes TCP handshakes in the kernel but never answers).
* :func:`clock_offset`: the node's ``/admin/clock`` minus the harness's
  clock at the request's midpoint, best of a few samples (smallest RTT).
* :func:`peer_probe`: a request the node treats as coming from a peer (the
  ``X-Dynamo-From`` header of its transport), to see the node's in-process
  transport faults (drop, loss, delay) act on it.
"""
from __future__ import annotations

import errno
import json
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Mapping, Sequence

from harness.backends.base import Backend, Node
from nemeses import admin, firewall
from nemeses.base import Probe

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

    From this host bound to src's address when it owns it (local backend);
    otherwise one ``backend.run`` on each source node runs the same checks there.
    """
    if not pairs:
        return []
    with ThreadPoolExecutor(max_workers=min(32, len(pairs))) as pool:
        results = list(pool.map(lambda p: tcp_connect(nodes[p[0]].host, nodes[p[1]].host, nodes[p[1]].port, timeout),
                                pairs))
    for src in sorted({p[0] for p, r in zip(pairs, results) if r == "nobind"}):
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
        for i, r in zip(idx, got):
            results[i] = r
    return results


def link_status(backend: Backend, nodes: Mapping[str, Node], pairs: Sequence[tuple[str, str]],
                timeout: float = 1.0) -> dict[tuple[str, str], str]:
    """(src, dst) -> raw result of one TCP connect from src's address to dst's port."""
    pairs = list(dict.fromkeys(pairs))
    return dict(zip(pairs, connect_all(backend, nodes, pairs, timeout)))


def health(node: Node, timeout: float = 1.0) -> tuple[bool, str]:
    """(answered ok, why not): a real request through the node's event loop."""
    try:
        status, answer = admin.request(node, "GET", "/admin/health", timeout=timeout)
    except socket.timeout:
        return False, f"no answer within {timeout:g}s"
    except ConnectionRefusedError:
        return False, "connection refused"
    except OSError as e:
        return False, f"{type(e).__name__}: {e}"
    except Exception as e:  # http.client.HTTPException and friends: a broken answer
        return False, f"{type(e).__name__}: {e}"
    if status == 200 and isinstance(answer, dict) and answer.get("ok"):
        return True, "ok"
    return False, f"HTTP {status}: {str(answer)[:100]}"


def wait_health(node: Node, want: bool, deadline: float, timeout: float = 1.0) -> tuple[bool, str, float]:
    """Poll health until it equals ``want`` or ``deadline`` (monotonic) passes: (reached, last detail, seconds)."""
    t0 = time.monotonic()
    while True:
        ok, why = health(node, timeout=timeout)
        if ok == want or time.monotonic() >= deadline:
            return ok == want, why, time.monotonic() - t0
        time.sleep(0.05)


def clock_offset(node: Node, samples: int = 3, timeout: float = 2.0) -> tuple[float, float]:
    """(node clock - harness clock, RTT) in seconds, from the sample with the smallest RTT.

    Raises admin.AdminError when the node does not answer.
    """
    best: tuple[float, float] | None = None
    for _ in range(samples):
        t0 = time.time()
        answer = admin.call(node, "GET", "/admin/clock", timeout=timeout)
        t1 = time.time()
        try:
            node_time = float(answer["time"])
        except (TypeError, KeyError, ValueError):
            raise admin.AdminError(f"{node.name} /admin/clock answered {answer!r}") from None
        rtt = t1 - t0
        sample = (node_time - (t0 + t1) / 2, rtt)
        if best is None or rtt < best[1]:
            best = sample
    assert best is not None
    return best


#: Header the node's transport reads to know which peer a request comes from.
SENDER_HEADER = "X-Dynamo-From"
#: A read-only node-to-node endpoint: the node's transport admits (or drops, or delays) the request
#: before the handler reads a key nobody writes (targets/dynamo/server.py ``internal``).
PEER_PING_PATH = "/internal/get"
PEER_PING_BODY = {"key": "dynharness-nemesis-probe"}


def peer_probe(node: Node, sender: str, timeout: float = 2.0) -> tuple[str, float]:
    """Send ``node`` a peer request as if from ``sender``: ("admitted"|"rejected"|"timeout"|"error:..", seconds)."""
    t0 = time.monotonic()
    try:
        status, _ = admin.request(node, "POST", PEER_PING_PATH, PEER_PING_BODY, timeout=timeout,
                                  headers={SENDER_HEADER: sender})
    except socket.timeout:
        return "timeout", time.monotonic() - t0
    except OSError as e:
        return f"error:{e}", time.monotonic() - t0
    took = time.monotonic() - t0
    return ("admitted" if status < 300 else "rejected" if status == 503 else f"error:HTTP {status}"), took


def verify_healed(backend: Backend, nodes: Sequence[Node], *, clock_tolerance: float = 0.25) -> Probe:
    """After a heal: every node runs and answers, no nemesis rule is left, no clock is skewed.

    Clock offsets are compared with the harness's clock (same host or
    NTP-synced hosts); faketime files are also read back when the backend can.
    """
    problems: list[str] = []
    meas: dict[str, object] = {}
    for node in nodes:
        if not backend.is_running(node.name):
            problems.append(f"{node.name} is not running")
            continue
        ok, why = health(node, timeout=2.0)
        if not ok:
            problems.append(f"{node.name} does not answer health: {why}")
            continue
        if "faketime" in backend.capabilities and node.clock_file:
            try:
                off, rtt = clock_offset(node)
                meas[f"{node.name}_clock_offset_ms"] = round(off * 1000, 1)
                if abs(off) > clock_tolerance + rtt:
                    problems.append(f"{node.name} clock is off by {off * 1000:+.0f} ms")
            except admin.AdminError as e:
                problems.append(str(e))
    if "iptables" in backend.capabilities and backend.firewall_chain:
        left = sorted({line for n in nodes for line in firewall.list_rules(backend, n.name) if firewall.TAG in line})
        meas["iptables_rules_left"] = len(left)
        if left:
            problems.append(f"{len(left)} nemesis rule(s) left in {backend.firewall_chain}")
    faults_left = {}
    for node in nodes:
        try:
            got = admin.call(node, "GET", "/admin/faults", timeout=2.0)
        except admin.AdminError:
            continue
        if isinstance(got, dict) and (got.get("drop") or got.get("loss") or got.get("delay_ms") or got.get("jitter_ms")):
            faults_left[node.name] = got
    if faults_left:
        problems.append(f"in-process faults left on {', '.join(sorted(faults_left))}")
    if problems:
        return Probe(False, "; ".join(problems), meas)
    return Probe(True, f"{len(nodes)} node(s) running and answering, no rule, no in-process fault, no clock skew", meas)
