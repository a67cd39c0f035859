"""Workers: the client workers, the final readers, and the nemesis worker.

Client workers (Jepsen's model): ``concurrency`` asyncio tasks in one event
loop, worker ``i`` bound to node ``i mod nodes`` and starting as process
``i``. Each draws ops from its generator (its own random stream), waits the
stagger delay, journals the invoke, runs the op, journals the completion.
After an ``info`` (timeout, broken connection, write that may have landed)
the worker continues as process ``p + concurrency``: the old process may
still be in flight forever.

The nemesis worker runs the fault schedule in its own thread, so a slow
fault (an iptables call, a node restart) never stalls the clients. Every
action is journaled as an invoke and a completion: ``info`` with what was
done per node, the probe and the mechanism; ``fail`` when the nemesis
raised or its probe failed.
"""
from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
import zlib
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from harness.generators import GenContext, OpRequest, TimeLimit, rate_limited, worker_rng
from harness.history import HistoryJournal
from harness.ops import FAIL, INFO, INVOKE, NEMESIS, OK
from harness.workloads import Completion, Workload, error_text
from nemeses import fault_kind

if TYPE_CHECKING:
    from targets.adapter import TargetClient

_GUARD_SLACK = 2.0  # seconds beyond the op's requests' timeouts before the harness gives up on it itself
_REQUESTS_PER_OP = 2  # a read-modify-write is a read then a write, each with its own client timeout


@dataclass(frozen=True)
class ClientPhase:
    """Parameters of the main phase every client worker runs."""

    seed: int
    concurrency: int
    rate: float
    duration: float
    client_timeout: float


async def run_op(journal: HistoryJournal, workload: Workload, client: "TargetClient", process: int,
                 req: OpRequest, state: dict[str, Any], timeout: float, **extra: Any) -> Completion:
    """Journal one op's invoke, run it, journal its completion; return the completion.

    Anything the workload did not classify (a hang past the guard timeout, an
    unexpected exception) is ``info``: the request may have reached the store.
    """
    node = client.node
    fields = {**extra, **req.extra}
    journal.record(process, INVOKE, req.f, key=req.key, value=req.value, node=node, **fields)
    guard = _REQUESTS_PER_OP * timeout + _GUARD_SLACK
    try:
        comp = await asyncio.wait_for(workload.execute(client, req, state), guard)
    except asyncio.TimeoutError:
        comp = Completion.info(f"no answer within {guard:g}s", req.value)
    except asyncio.CancelledError:
        raise  # the invoke stays open: the run was interrupted mid-request
    except Exception as e:  # noqa: BLE001 - unknown client failure: may or may not have happened
        comp = Completion.info(error_text(e), req.value)
    journal.record(process, comp.type, req.f, key=req.key, value=comp.value, node=node, error=comp.error,
                   siblings=comp.siblings, **fields, **dict(comp.extra))
    return comp


async def client_worker(i: int, journal: HistoryJournal, workload: Workload,
                        clients: Mapping[str, "TargetClient"], node_names: Sequence[str],
                        phase: ClientPhase, t0: float, stop: asyncio.Event) -> int:
    """One client worker's main phase; returns the last process id it used."""
    loop = asyncio.get_running_loop()
    ctx = GenContext(worker=i, rng=worker_rng(phase.seed, i))
    gen = TimeLimit(rate_limited(workload.generator(), phase.rate, phase.concurrency), phase.duration)
    home = node_names[i % len(node_names)]
    process = i
    session: dict[str, Any] = {"id": i}
    next_at = t0
    while not stop.is_set():
        ctx.elapsed = max(0.0, loop.time() - t0)
        req = gen.next(ctx)
        if req is None:
            break
        next_at = loop.time() + req.delay if req.follows else max(next_at + req.delay, loop.time())
        if next_at - t0 >= phase.duration:
            break
        wait = next_at - loop.time()
        if wait > 0:
            try:
                await asyncio.wait_for(stop.wait(), wait)
                break
            except asyncio.TimeoutError:
                pass
        comp = await run_op(journal, workload, clients[req.node or home], process, req, session,
                            phase.client_timeout, session=i)
        if comp.type == INFO:
            process += phase.concurrency
    return process


async def run_clients(journal: HistoryJournal, workload: Workload, clients: Mapping[str, "TargetClient"],
                      node_names: Sequence[str], phase: ClientPhase, stop: asyncio.Event | None = None) -> int:
    """Run every client worker for the main phase; returns the highest process id used."""
    stop = stop or asyncio.Event()
    t0 = asyncio.get_running_loop().time()
    last = await asyncio.gather(*(client_worker(i, journal, workload, clients, node_names, phase, t0, stop)
                                  for i in range(phase.concurrency)))
    return max(last)


async def poll_until_quiet(clients: Mapping[str, "TargetClient"], question: str, quiet: Any,
                           timeout: float, poll: float) -> tuple[bool, float, dict[str, Any]]:
    """Ask every node ``question`` (a TargetClient method) until all answer ``quiet``, at most ``timeout`` s.

    Returns (all quiet, seconds waited, last answer per node). A node without
    the method counts as quiet; one that cannot answer counts as not quiet
    (its answer is None).
    """
    loop = asyncio.get_running_loop()
    t0 = loop.time()

    async def ask(client: "TargetClient") -> Any:
        method = getattr(client, question, None)
        if method is None:
            return quiet
        try:
            return await asyncio.wait_for(method(), timeout=5.0)
        except Exception:  # noqa: BLE001 - a node that cannot say is not quiet
            return None

    while True:
        answers = dict(zip(clients, await asyncio.gather(*(ask(c) for c in clients.values()))))
        done = all(a == quiet for a in answers.values())
        if done or loop.time() - t0 >= timeout:
            return done, round(loop.time() - t0, 3), answers
        await asyncio.sleep(poll)


async def converge(clients: Mapping[str, "TargetClient"], timeout: float, poll: float = 0.25) -> dict[str, Any]:
    """Wait until no node considers any peer down, at most ``timeout`` seconds.

    Nodes start one after another, so the first ones see their peers as
    unreachable for a moment; clients started then would meet sloppy-quorum
    fallbacks the experiment never asked for (seen as read-your-writes
    violations in a fault-free N=3 R=1 W=3 run). Jepsen waits for the
    cluster to converge before the test; so does the runner. The outcome goes
    into results.json (``converge``).
    """
    converged, seconds, views = await poll_until_quiet(clients, "peers_down", [], timeout, poll)
    return {"converged": converged, "seconds": seconds, "down": {n: v for n, v in views.items() if v != []}}


async def settle(clients: Mapping[str, "TargetClient"], timeout: float, poll: float = 0.5) -> dict[str, Any]:
    """Wait until no node reports pending handoffs, at most ``timeout`` seconds.

    Dynamo only promises that acknowledged writes arrive *eventually*: a write
    taken by a fallback during a partition sits there as a hint until gossip
    sees the primary again. Reading before that makes a write "lost" that is
    merely in transit. Whether the store settled, and how long it took, goes
    into results.json (``settle``); the final reads follow either way.
    """
    settled, seconds, counts = await poll_until_quiet(clients, "pending_handoffs", 0, timeout, poll)
    return {"settled": settled, "seconds": seconds, "pending": counts}


class ReadAllReplicas:
    """A client whose reads ask every replica (r = N) for the final reads.

    After heal and settle, a final read that merges all N replicas sees every
    version that survived anywhere on the preference list; a read of R < N
    could miss one that anti-entropy would still deliver. If r = N cannot be
    met (a replica still down) it falls back to the default R and says so
    (``fell_back``): the final read is then journaled ``partial``, and the
    lost-writes checker will not call an item it lacks lost for certain.
    One instance per read attempt, so the flag is that read's own.
    """

    def __init__(self, client: "TargetClient", r: int) -> None:
        self._client = client
        self._r = r
        self.node = client.node
        self.fell_back = False

    async def get(self, key: str, *, r: int | None = None, pr: int | None = None,
                  timeout: float | None = None) -> Any:
        from targets.adapter import OpFailed
        try:
            return await self._client.get(key, r=self._r, pr=pr, timeout=timeout)
        except OpFailed:
            self.fell_back = True
            return await self._client.get(key, r=r, pr=pr, timeout=timeout)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


async def final_reads(journal: HistoryJournal, workload: Workload, clients: Mapping[str, "TargetClient"],
                      keys: Sequence[str], first_process: int, timeout: float, client_timeout: float,
                      readers: int = 8, read_all: int | None = None) -> list[str]:
    """Read every key once successfully (``final: true``), trying node after node until ``timeout``.

    Nodes that fail a health check are tried last. With ``read_all`` (the
    store's N) each final read asks every replica (:class:`ReadAllReplicas`).
    Every attempt is journaled. Returns the keys that got no ok read in time.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    names = list(clients)
    health = await asyncio.gather(*(_healthy(clients[n], min(2.0, client_timeout)) for n in names))
    order = [n for n, ok in zip(names, health) if ok] + [n for n, ok in zip(names, health) if not ok]
    queue: asyncio.Queue[str] = asyncio.Queue()
    for k in keys:
        queue.put_nowait(k)
    missing: list[str] = []
    readers = max(1, min(readers, len(keys)))

    async def reader(j: int) -> None:
        process = first_process + j
        while True:
            try:
                key = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            start = zlib.crc32(key.encode()) % len(order)
            attempt = 0
            while True:
                node = order[(start + attempt) % len(order)]
                attempt += 1
                req = OpRequest("read", key)
                client = ReadAllReplicas(clients[node], read_all) if read_all else clients[node]
                comp = await run_op(journal, _FinalRead(workload), client, process, req, {},
                                    client_timeout, final=True)
                if comp.type == INFO:
                    process += readers
                if comp.type == OK:
                    break
                if loop.time() >= deadline:
                    missing.append(key)
                    break
                if attempt % len(order) == 0:
                    await asyncio.sleep(min(0.5, max(0.0, deadline - loop.time())))

    await asyncio.gather(*(reader(j) for j in range(readers)))
    return sorted(missing)


@dataclass(frozen=True)
class _FinalRead:
    """Adapter: a workload whose every op is its final read."""

    workload: Workload

    async def execute(self, client: "TargetClient", req: OpRequest, session: dict[str, Any]) -> Completion:
        """The workload's final read, marked ``partial`` when it could not ask every replica."""
        assert req.key is not None
        comp = await self.workload.final_read(client, req.key)
        if getattr(client, "fell_back", False):
            comp = dataclasses.replace(comp, extra=MappingProxyType({**comp.extra, "partial": True}))
        return comp


async def _healthy(client: "TargetClient", timeout: float) -> bool:
    try:
        return bool(await asyncio.wait_for(client.health(), timeout))
    except Exception:  # noqa: BLE001 - any failure means "not healthy"
        return False


@dataclass
class NemesisWorker:
    """Runs a fault schedule in its own thread and journals every action.

    ``ran`` holds the scheduled actions actually invoked (for
    ``nemesis-schedule.json``); ``active`` the faults currently in effect
    (for the live display).
    """

    journal: HistoryJournal
    nemesis: Any                              # nemeses.base.Nemesis
    schedule: Sequence[Any]                   # nemeses.schedule.ScheduledAction (.at, .op)
    ran: list[Any] = field(default_factory=list)
    active: dict[str, Any] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the schedule now (action times are seconds from this call)."""
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="nemesis", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop after the action in progress (waits up to ``timeout`` for it)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        for action in self.schedule:
            wait = self._t0 + float(action.at) - time.monotonic()
            if wait > 0 and self._stop.wait(wait):
                return
            if self._stop.is_set():
                return
            self.ran.append(action)
            self.invoke(action.op)

    def invoke(self, op: Any) -> None:
        """Perform one nemesis op and journal its invoke and completion."""
        self.journal.record(NEMESIS, INVOKE, op.f, value=op.value)
        try:
            out = self.nemesis.invoke(op)
        except Exception as e:  # noqa: BLE001 - a failed fault is recorded, never fatal to the run
            self.errors.append(f"{op.f}: {error_text(e)}")
            self.journal.record(NEMESIS, FAIL, op.f, value=op.value, error=error_text(e))
            return
        if record_outcome(self.journal, op.f, out):
            _track(self.active, op.f, {"mechanism": out.mechanism, "done": out.done,
                                       "what": fault_kind.describe_op(op.f, op.value, out.done,
                                                                      fault_kind.registered())})


def record_outcome(journal: HistoryJournal, f: str, out: Any) -> bool:
    """Journal a nemesis action's completion: ``info`` when its probe confirmed it, else ``fail``.

    The one place a fault becomes "done" in a history, so nothing is ever
    recorded as done without the probe that says so. The completion's time is
    when the probe confirmed it; ``effective`` (same clock) when its mechanism
    took effect, which fault windows start from. Returns the probe's verdict.
    """
    probe = out.probe.to_json()
    when = getattr(out, "effective_ns", None)
    extra = {"effective": journal.at(when)} if when is not None else {}
    if out.probe.ok:
        journal.record(NEMESIS, INFO, f, value=_jsonable(out.done), probe=probe, mechanism=out.mechanism, **extra)
    else:
        journal.record(NEMESIS, FAIL, f, value=_jsonable(out.done), error=f"probe failed: {out.probe.detail}",
                       probe=probe, mechanism=out.mechanism, **extra)
    return bool(out.probe.ok)


def heal_all(journal: HistoryJournal | None, nemesis: Any, on_error: Callable[[str], None]) -> None:
    """Heal every fault, verified, and journal it as a ``heal`` op; never raises.

    A nemesis that handles ``heal`` as an op (the composed one does) heals and
    probes that the cluster is clean, and the op is recorded like any fault
    (``fail`` when the probe says otherwise). Otherwise ``heal()`` is called
    and the op says it was not verified.
    """
    if nemesis is None:
        return
    if journal is not None:
        journal.record(NEMESIS, INVOKE, "heal")
    try:
        if "heal" in getattr(nemesis, "fs", ()):
            from nemeses.base import NemesisOp
            out = nemesis.invoke(NemesisOp("heal"))
            ok = record_outcome(journal, "heal", out) if journal is not None else out.probe.ok
            if not ok:
                on_error(f"heal not verified: {out.probe.detail}")
            return
        nemesis.heal()
    except Exception as e:  # noqa: BLE001 - keep cleaning up; report it
        on_error(f"heal failed: {error_text(e)}")
        if journal is not None:
            journal.record(NEMESIS, FAIL, "heal", error=error_text(e))
        return
    if journal is not None:
        journal.record(NEMESIS, INFO, "heal", value="healed (not verified: this nemesis has no heal probe)")

def _jsonable(v: Any) -> Any:
    if isinstance(v, Mapping):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set, frozenset)):
        return [_jsonable(x) for x in v]
    return v


def _track(active: dict[str, Any], f: str, done: Any) -> None:
    """Keep ``active`` as the faults in effect, by window name: a kind's start adds it, its stop
    (or ``heal``) removes it; ``start-X`` / ``stop-X`` of no registered kind pair by name."""
    kinds = fault_kind.registered()
    if f == "heal":
        active.clear()
    elif f.startswith("start-") or any(k.start == f for k in kinds.values()):
        active[fault_kind.window_name(f, kinds)] = done
    else:
        for start in {k.start for k in kinds.values() if k.stop == f} | ({"start-" + f[5:]} if f.startswith("stop-") else set()):
            active.pop(fault_kind.window_name(start, kinds), None)
