"""EDN histories shaped like the public test corpora that Jepsen-style checkers are measured on.

Why generated: the corpora themselves are not fetched here (only package registries are
reachable), and the point of ``import_bench.py`` is a side-by-side figure against
Porcupine's timings on histories of the same shape, not these exact files. Two shapes:

* :func:`kv_history`, like Porcupine's ``test_data/kv`` (from a key-value store lab's
  tests): ``C`` clients, 10 keys, mostly ``append`` with unique values ``"x C N y"``, some
  ``get`` and a few ``put``, one EDN map per line with ``:key`` and no ``:time``. Sizes are
  matched to the originals' (c01: ~60 ops, c10: ~300, c50: ~1,100). ``bad=True`` makes one
  get miss an append that completed before the get was invoked (not linearizable).
* :func:`etcd_history`, like Porcupine's Jepsen etcd logs (etcd 2 with reads served by any
  member): 5 clients on one register, read / write / cas on values 0-4, timeouts as
  ``:info`` after which the client continues as a new process, and reads that a lagging
  member sometimes answers with an old value (so most histories are not linearizable, as
  79 of Porcupine's 102 are not).

Every op takes effect at a random moment while it is in flight, so without the planted
faults a history is linearizable by construction.
"""
from __future__ import annotations

import json
import random


def _edn_value(v: object) -> str:
    if v is None:
        return "nil"
    if isinstance(v, str) and v.startswith(":"):
        return v
    if isinstance(v, (list, tuple)):
        return "[" + " ".join(_edn_value(x) for x in v) + "]"
    return json.dumps(v)


def _line(process: int, type_: str, f: str, value: object, key: str | None = None) -> str:
    key_part = f', :key "{key}"' if key is not None else ""
    return f"{{:process {process}, :type :{type_}, :f :{f}{key_part}, :value {_edn_value(value)}}}"


#: Ops per client, and clients in flight on average (latencies are lognormal: most ops are quick,
#: a few stall), for the three kv sizes: about what Porcupine's c01 / c10 / c50 files show
#: (~60 / ~300 / ~1,100 ops; in c50 most of the 50 clients wait while ~12 make progress).
KV_OPS_PER_CLIENT = {1: 60, 10: 30, 50: 22}
KV_IN_FLIGHT = {1: 1.0, 10: 8.0, 50: 12.0}


def kv_history(clients: int, seed: int, bad: bool = False, keys: int = 10) -> str:
    """EDN text of a kv history (see the module docstring)."""
    rng = random.Random(seed)
    per_client = KV_OPS_PER_CLIENT.get(clients, 25)
    in_flight = min(float(clients), KV_IN_FLIGHT.get(clients, clients / 4))
    think = 1.65 * (clients / in_flight - 1)      # mean latency e^0.5 ~ 1.65: think time for that share
    ops = []                                       # (invoke t, effect t, complete t, client, f, key, value)
    for c in range(clients):
        t = rng.random()
        for n in range(per_client):
            t += rng.expovariate(1 / think) if think > 0 else 0.0
            latency = rng.lognormvariate(0, 1)
            r = rng.random()
            f = "get" if r < 0.35 else "put" if r < 0.37 else "append"
            value = None if f == "get" else f"x {c} {n} y"
            ops.append((t, t + rng.random() * latency, t + latency, c, f, str(rng.randrange(keys)), value))
            t += latency
    store = {str(k): "" for k in range(keys)}
    result: dict[int, str] = {}
    for i in sorted(range(len(ops)), key=lambda i: ops[i][1]):      # take effect in effect order
        _, _, _, _, f, key, value = ops[i]
        if f == "get":
            result[i] = store[key]
        elif f == "put":
            store[key] = value
        else:
            store[key] += value
    timeline = sorted([(op[0], 1, i) for i, op in enumerate(ops)] + [(op[2], 0, i) for i, op in enumerate(ops)])
    events: list[list] = []
    for _, invoke, i in timeline:
        done = not invoke
        _, _, _, c, f, key, value = ops[i]
        events.append([c, "ok" if done else "invoke", f, key, result[i] if done and f == "get" else value])
    if bad:
        _drop_one_append(events, rng)
    return "\n".join(_line(p, t, f, v, k) for p, t, f, k, v in events) + "\n"


def _drop_one_append(events: list[list], rng: random.Random) -> None:
    """Make one ok get miss an append that completed before the get was invoked."""
    open_at: dict[int, int] = {}
    completed_appends: list[tuple[int, str, str]] = []   # (completion position, key, value)
    candidates = []
    for i, (p, t, f, k, v) in enumerate(events):
        if t == "invoke":
            open_at[p] = i
            continue
        inv = open_at.pop(p)
        if f == "append":
            completed_appends.append((i, k, v))
        elif f == "get" and v:
            before = [a for a in completed_appends if a[1] == k and a[0] < inv and a[2] in v]
            if before:
                candidates.append((i, before[-1][2]))
    i, missing = rng.choice(candidates[len(candidates) // 2:] or candidates)
    events[i][4] = events[i][4].replace(missing, "", 1)


def etcd_history(seed: int, ops: int = 120, clients: int = 5, stale_read: float = 0.1) -> str:
    """EDN text of an etcd-shaped register history (see the module docstring)."""
    rng = random.Random(seed)
    value: int | None = None
    past: list[int | None] = [None]
    procs = list(range(clients))
    next_proc = clients
    inflight: dict[int, dict] = {}
    lines: list[str] = []
    invoked = 0
    while invoked < ops or inflight:
        c = rng.randrange(clients)
        st = inflight.get(c)
        if st is None:
            if invoked >= ops:
                continue
            r = rng.random()
            if r < 0.4:
                st = {"f": "read", "arg": None}
            elif r < 0.7:
                st = {"f": "write", "arg": rng.randrange(5)}
            else:
                st = {"f": "cas", "arg": [rng.randrange(5), rng.randrange(5)]}
            st.update(applied=False, timeout=rng.random() < 0.05, result=None, ok=True)
            lines.append(_line(procs[c], "invoke", st["f"], st["arg"]))
            inflight[c] = st
            invoked += 1
        elif not st["applied"]:
            st["applied"] = True
            if st["timeout"] and rng.random() < 0.5:
                continue                       # timed out before it took effect
            if st["f"] == "read":
                lagging = rng.random() < stale_read and len(past) > 2
                st["result"] = rng.choice(past[-4:-1]) if lagging else value
            elif st["f"] == "write":
                value = st["arg"]
                past.append(value)
            elif value == st["arg"][0]:
                value = st["arg"][1]
                past.append(value)
            else:
                st["ok"] = False
        else:
            if st["timeout"]:
                lines.append(_line(procs[c], "info", st["f"], ":timed-out"))
                procs[c] = next_proc
                next_proc += 1
            elif not st["ok"]:
                lines.append(_line(procs[c], "fail", st["f"], st["arg"]))
            else:
                lines.append(_line(procs[c], "ok", st["f"], st["result"] if st["f"] == "read" else st["arg"]))
            del inflight[c]
    return "\n".join(lines) + "\n"
