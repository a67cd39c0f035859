"""The ``linearizable`` checker: register histories, key by key, in bounded time.

P-compositionality: a history is linearizable iff each key's sub-history is,
so each key gets its own search (``search.py``). The searches do not run one
after another: they are generators, run round-robin ``quantum`` steps at a
time, so one non-linearizable key is found while harder keys are still
being searched, and an undecided key cannot starve the rest. At the
deadline every unfinished key is ``unknown`` (never a hang); the live
search caches together are capped, and on the cap the key with the biggest
cache is given up as ``unknown``.

What the history ops mean here (``docs/contracts.md`` §2): ``ok`` ops
happened between invoke and completion; ``fail`` ops did not happen and are
dropped; ``info`` ops and invokes that never completed may have happened at
any time after the invoke, or never (return at +infinity); an indeterminate
read tells nothing and is dropped. Real time is the history's event order
(op indexes), which the journal stamps from one monotonic clock.
"""
from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Hashable, Mapping, Sequence

from checkers.base import Anomaly, CheckContext, Result, Verdict
from checkers.linearizability import choice
from checkers.linearizability.counterexample import Counterexample, budget_for, shrink
from checkers.linearizability.model import UNKNOWN, Model, Operation
from checkers.linearizability.search import DEFAULT_MAX_CACHE, INVALID, VALID, SearchOutcome, search
from harness.errors import UserError
from harness.history import History
from harness.ops import FAIL, NEMESIS, OK

DEFAULT_TIME_LIMIT = 60.0
QUANTUM = 1000                 # search steps per turn of one key (~1 ms)
#: Why a key's search ended undecided (``details.keys[k].stopped``): the checker stopped at another
#: key found invalid, its time limit, the memory cap over all keys, or this key's own cache cap.
STOP_CAUSES = ("invalid-elsewhere", "time-limit", "memory-cap", "cache-cap")
#: Rough bytes per cached (linearized set, state) pair, measured in benchmarks/linearizability_bench.py.
BYTES_PER_CACHED_PAIR = 150


@dataclass
class KeyReport:
    """One key's search: verdict, cost, and (if invalid) what proves it."""

    key: Hashable
    ops: list[Operation]
    verdict: str = "unknown"
    reason: str | None = None
    steps: int = 0
    depth: int = 0              # the most ops the search had linearized at once (how far it got)
    stopped: str | None = None  # why an unknown key was given up: one of STOP_CAUSES
    seconds: float = 0.0
    cache_peak: int = 0
    outcome: SearchOutcome | None = None
    counterexample: Counterexample | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def run_keys(model: Model, ops_by_key: Mapping[Hashable, Sequence[Operation]], *, deadline: float,
             max_cache: int = DEFAULT_MAX_CACHE, stop_on_invalid: bool = True,
             quantum: int = QUANTUM) -> dict[Hashable, KeyReport]:
    """Search every key, interleaved round-robin (smallest keys first), until done or ``deadline``."""
    reports = {k: KeyReport(k, list(v)) for k, v in ops_by_key.items()}
    order = sorted(reports, key=lambda k: len(reports[k].ops))
    tasks = {k: search(model, reports[k].ops, max_cache=max_cache, quantum=quantum) for k in order}
    live: dict[Hashable, int] = {}
    clock = time.perf_counter

    def give_up(key: Hashable, cause: str, reason: str) -> None:
        tasks.pop(key).close()
        live.pop(key, None)
        reports[key].verdict, reports[key].reason, reports[key].stopped = "unknown", reason, cause

    while tasks:
        for key in list(tasks):
            if key not in tasks:
                continue
            rep = reports[key]
            t0 = clock()
            try:
                rep.steps, cached, depth = next(tasks[key])
                rep.depth = max(rep.depth, depth)
                rep.cache_peak = max(rep.cache_peak, cached)
                live[key] = cached
            except StopIteration as stop:
                out: SearchOutcome = stop.value
                del tasks[key]
                live.pop(key, None)
                rep.outcome, rep.verdict, rep.reason = out, out.verdict, out.reason
                rep.steps, rep.cache_peak = out.steps, max(rep.cache_peak, out.cache_peak)
                rep.depth = max(rep.depth, len(out.longest))
                if out.verdict not in (VALID, INVALID):
                    rep.stopped = "cache-cap"
            except Exception as e:  # noqa: BLE001 - the model is the user's code: name it, in one line
                for task in tasks.values():
                    task.close()
                raise choice.ModelError(f"{choice.describe_error(model, e)} (key {key!r})") from None
            rep.seconds += clock() - t0
            if rep.verdict == INVALID and stop_on_invalid:
                for other in list(tasks):
                    give_up(other, "invalid-elsewhere",
                            f"not finished: stopped once key {key!r} was found non-linearizable")
                return reports
            if sum(live.values()) > max_cache:
                biggest = max(live, key=live.__getitem__)
                give_up(biggest, "memory-cap", f"memory cap: the live search caches passed {max_cache} pairs "
                                 f"and this key held the most ({live.get(biggest, 0)})")
            if time.monotonic() >= deadline:
                for other in list(tasks):
                    give_up(other, "time-limit", "time limit reached before the search finished")
                break
    return reports


def check_operations(model: Model, ops: Sequence[Operation], time_limit: float = DEFAULT_TIME_LIMIT, *,
                     max_cache: int = DEFAULT_MAX_CACHE, counterexample: bool = True) -> tuple[Verdict, dict[str, Any]]:
    """Check one key's ops (the standalone API for tests and Jepsen imports).

    Returns the verdict and a dict: ``steps``, ``seconds``, ``cache_peak``,
    ``reason``; for a valid key ``linearization`` (op ids in order); for an
    invalid one ``counterexample`` (op ids), ``counterexample_minimal``,
    ``longest_prefix`` (op ids), ``state_after_prefix`` and ``blocked`` (the
    op that returned before it could be placed).
    """
    deadline = time.monotonic() + time_limit
    rep = run_keys(model, {None: ops}, deadline=deadline, max_cache=max_cache)[None]
    if rep.verdict == INVALID and counterexample:
        per_search, total = budget_for(rep.steps)
        rep.counterexample = shrink(model, rep.ops, deadline=max(deadline, time.monotonic() + 1.0),
                                    step_budget=per_search, total_steps=total)
    return Verdict(rep.verdict), key_details(model, rep, lambda op: op.id, with_linearization=True)


def key_details(model: Model, rep: KeyReport, show: Any, with_linearization: bool = False) -> dict[str, Any]:
    """The per-key drill-down: cost always; proof of the verdict where there is one."""
    d: dict[str, Any] = {"verdict": rep.verdict, "ops": len(rep.ops), "steps": rep.steps,
                         "seconds": round(rep.seconds, 6), "cache_peak": rep.cache_peak, "reason": rep.reason,
                         "ok_ops": sum(1 for op in rep.ops if not op.indeterminate), "depth": rep.depth}
    if rep.stopped is not None:
        d["stopped"] = rep.stopped
    out = rep.outcome
    if out is not None and out.verdict == VALID and with_linearization:
        d["linearization"] = [show(rep.ops[i]) for i in out.linearization]
    if out is not None and out.verdict == INVALID:
        d["longest_prefix"] = [show(rep.ops[i]) for i in out.longest]
        d["state_after_prefix"] = model.describe_state(out.longest_state)
        d["blocked"] = show(rep.ops[out.blocked]) if out.blocked is not None else None
    if rep.counterexample is not None:
        d["counterexample"] = [show(rep.ops[i]) for i in rep.counterexample.ops]
        d["counterexample_minimal"] = rep.counterexample.minimal
        d["counterexample_scope_end"] = _show_index(rep.counterexample.scope_end)
        d["counterexample_seconds"] = round(rep.counterexample.seconds, 6)
    return d


def _freeze(v: Any) -> Any:
    """JSON lists become tuples so inputs and outputs are hashable model values."""
    return tuple(_freeze(x) for x in v) if isinstance(v, list) else v


def history_operations(history: History, model: Model) -> tuple[dict[Hashable, list[Operation]], Counter, dict]:
    """Per-key Operations from a history, with counts of what was dropped and why.

    Also returns ``pairs_by_id``: the (invoke, completion) ops behind each
    Operation id (the invoke's index), for the report.
    """
    by_key: dict[Hashable, list[Operation]] = {}
    counts: Counter = Counter()
    pairs: dict[int, tuple] = {}
    for inv, comp in history.pairs():
        if inv.process == NEMESIS:
            continue
        if inv.f not in model.fs:
            counts["ops_ignored"] += 1
            continue
        if comp is not None and comp.type == FAIL:
            counts["ops_failed_dropped"] += 1
            continue
        inp = (inv.f, _freeze(inv.value))
        if comp is not None and comp.type == OK:
            op = Operation(inp, _freeze(comp.value), inv.index, comp.index, inv.index)
        elif inv.f in model.pure_fs:
            counts["info_reads_dropped"] += 1
            continue
        else:
            counts["ops_info"] += 1
            op = Operation(inp, UNKNOWN, inv.index, math.inf, inv.index)
        counts["ops_checked"] += 1
        by_key.setdefault(inv.key, []).append(op)
        pairs[inv.index] = (inv, comp)
    return by_key, counts, pairs


def _show_index(t: float) -> str:
    return "the end" if t == math.inf else str(int(t))


def _option(ctx: CheckContext, name: str, default: Any) -> Any:
    v = ctx.options.get(name, default)
    return default if v is None else v


class LinearizabilityChecker:
    """Checker ``linearizable``: each key of a history against a model (register, cas-register, kv, yours).

    Options (``CheckContext.options``): ``linearizable_model`` (``auto`` | a registered name
    such as ``register``, ``cas-register``, ``kv`` | ``package.module:Class``; see
    ``choice.py``), ``linearizable_model_initial`` (the model's initial value),
    ``linearizable_time_limit`` (seconds; ``CheckContext.time_limit`` wins when set),
    ``linearizable_max_cache`` (cached pairs over all live searches),
    ``linearizable_stop_on_invalid`` (default true), ``linearizable_counterexample_time``
    (seconds at most for shrinking the invalid keys' counterexamples; each key's shrinking
    also has a step budget proportional to its search, ``counterexample.budget_for``).

    A history whose ops of the model's kinds all failed (or were indeterminate reads) is
    valid: nothing happened, and the empty linearization explains that (Knossos and
    Porcupine say the same). One with no op of the model's kinds at all is unknown: nothing
    was checked, which usually means the wrong model.
    """

    name = "linearizable"
    options = ("linearizable_time_limit", "linearizable_model", "linearizable_model_initial",
               "linearizable_max_cache", "linearizable_stop_on_invalid",
               "linearizable_counterexample_time")  # the [checkers] spec options it reads

    def __init__(self, model: Model | None = None):
        self.model = model

    def _model(self, history: History, ctx: CheckContext) -> Model:
        if self.model is not None:
            return self.model
        return choice.build(_option(ctx, "linearizable_model", "auto"), history,
                            ctx.options.get("linearizable_model_initial", choice.NO_INITIAL))

    def check(self, history: History, ctx: CheckContext) -> Result:
        """Verdict over all keys: any invalid key -> invalid, else any unknown -> unknown.

        A model that raises gives ``unknown`` with ``details.model_error`` (one line): ``check``
        turns that into exit 3, and a run keeps its other checkers' verdicts."""
        t_start = time.monotonic()
        model = self._model(history, ctx)
        try:
            return self._check(history, ctx, model, t_start)
        except choice.ModelError as e:
            return Result(self.name, Verdict.UNKNOWN, {"linearizable": "unknown"}, (),
                          {"model": getattr(model, "name", "?"), "model_error": str(e)}, str(e),
                          time.monotonic() - t_start)

    def _check(self, history: History, ctx: CheckContext, model: Model, t_start: float) -> Result:
        limit = float(ctx.time_limit or _option(ctx, "linearizable_time_limit", DEFAULT_TIME_LIMIT))
        if limit <= 0:
            raise UserError(f"linearizable_time_limit must be positive, got {limit}")
        max_cache = int(_option(ctx, "linearizable_max_cache", DEFAULT_MAX_CACHE))
        stop = bool(_option(ctx, "linearizable_stop_on_invalid", True))
        cx_time = float(_option(ctx, "linearizable_counterexample_time", min(5.0, limit / 10)))
        by_key, op_counts, pairs = history_operations(history, model)
        deadline = t_start + limit
        reports = run_keys(model, by_key, deadline=deadline, max_cache=max_cache, stop_on_invalid=stop)
        invalid = [r for r in reports.values() if r.verdict == INVALID]
        shrink_until = time.monotonic() + cx_time   # one wall budget for all invalid keys, first come first served
        for rep in invalid:
            per_search, total = budget_for(rep.steps)
            try:
                rep.counterexample = shrink(model, rep.ops, deadline=shrink_until, step_budget=per_search,
                                            total_steps=total)
            except Exception as e:  # noqa: BLE001 - the model raised while shrinking: the user's code
                raise choice.ModelError(f"{choice.describe_error(model, e)} (key {rep.key!r})") from None

        def show(op: Operation) -> dict[str, Any]:
            inv, comp = pairs[op.id]
            return {"invoke": inv.index, "complete": comp.index if comp is not None else None,
                    "process": inv.process, "type": comp.type if comp is not None else "open",
                    "op": model.describe_op(op.input, op.output)}

        key_info = {str(k): key_details(model, r, show) for k, r in reports.items()}
        anomalies = tuple(self._anomaly(model, r, show) for r in invalid)
        tally = Counter(r.verdict for r in reports.values())
        nothing_done = not reports and op_counts["ops_ignored"] == 0 and (
            op_counts["ops_failed_dropped"] + op_counts["info_reads_dropped"] > 0)
        verdict = Verdict.VALID if nothing_done else Verdict.merge([Verdict(r.verdict) for r in reports.values()])
        worst = max(reports.values(), key=lambda r: r.seconds, default=None)
        counts = {"linearizable": verdict.value, "keys": len(reports), "keys_valid": tally[VALID],
                  "keys_invalid": tally[INVALID], "keys_unknown": tally["unknown"],
                  **{k: op_counts.get(k, 0) for k in ("ops_checked", "ops_info", "ops_failed_dropped",
                                                      "info_reads_dropped", "ops_ignored")}}
        cache_peak = max((r.cache_peak for r in reports.values()), default=0)
        details = {
            "model": model.name, "time_limit": limit, "max_cache": max_cache,
            "cache_peak_pairs": cache_peak, "cache_peak_bytes_estimate": cache_peak * BYTES_PER_CACHED_PAIR,
            "worst_key": None if worst is None else {"key": str(worst.key), "ops": len(worst.ops),
                                                     "seconds": round(worst.seconds, 6), "steps": worst.steps,
                                                     "verdict": worst.verdict},
            "keys": key_info,
        }
        reason = None
        if nothing_done:
            reason = (f"nothing to check: every {'/'.join(sorted(model.fs))} op failed or was an indeterminate "
                      "read, and the empty linearization explains that")
        elif not reports:
            reason = f"no {'/'.join(sorted(model.fs))} ops to check"
            if op_counts["ops_ignored"]:
                fs = sorted({o.f for o in history.client_ops()} - set(model.fs))
                reason += f" (the history's ops are {', '.join(fs[:6])}: another model?)"
        elif invalid:
            reason = "; ".join(a.description for a in anomalies[:3])
        elif tally["unknown"]:
            undecided = [f"{r.key!r} ({r.reason})" for r in reports.values() if r.verdict == "unknown"]
            reason = f"{len(undecided)} key(s) undecided: " + ", ".join(undecided[:5])
        return Result(self.name, verdict, counts, anomalies, details, reason, time.monotonic() - t_start)

    @staticmethod
    def _anomaly(model: Model, rep: KeyReport, show: Any) -> Anomaly:
        """The search's own evidence first (no extra work), then the shrunk set of ops that proves it."""
        cx = rep.counterexample
        assert cx is not None
        shown = [show(rep.ops[i]) for i in cx.ops]
        steps = ", ".join(f"{s['op']} [{s['invoke']}..{s['complete']}]" for s in shown)
        indexes = tuple(i for s in shown for i in (s["invoke"], s["complete"]) if i is not None)
        out = rep.outcome
        first = ""
        if out is not None and out.blocked is not None:
            b = show(rep.ops[out.blocked])
            first = (f"{b['op']} [{b['invoke']}..{b['complete']}] cannot follow the longest linearizable prefix "
                     f"({len(out.longest)} op(s), state {model.describe_state(out.longest_state)}); ")
        text = (f"key {rep.key!r}: {first}{len(shown)} acknowledged op(s) cannot be linearized, even with every "
                f"other op up to index {_show_index(cx.scope_end)} as may-or-may-not-have-happened"
                f"{'' if cx.minimal else ' (shrinking stopped at its budget)'}: {steps}")
        return Anomaly("non-linearizable", text, indexes, None if rep.key is None else str(rep.key))
