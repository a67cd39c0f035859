"""``dynharness explore``: search fault schedules for a failing run, shrink it, store a reproducer.

Exit codes: 0 no failure found (within the budget), 1 a failure found and confirmed (its
reproducer in ``minimal/``), 3 bad input or the runs cannot run, 130 interrupted (what was
found is kept; ``--resume DIR`` continues). See :mod:`harness.explore`.
"""
from __future__ import annotations

import argparse
import math
import random
import sys
from typing import Any, Mapping

from harness.errors import UserError
from harness.limits import number, seconds_text

EXAMPLES = """examples:
  dynharness explore --nemesis partition,crash --budget 10m
  dynharness explore --spec my-test.toml --max-run 15s --checkers lost-writes
  dynharness explore --set target.bug=handoff-skips-known --nemesis partition,crash --replays 5
  dynharness explore --vary target.mode=vclock,dvv --vary target.r=2,1 --budget 30m
  dynharness explore --resume histories/explore/20261204T231500 --budget 5m
"""
#: explore flags that are spec fields (a subset of run's; --set reaches every other)
SPEC_FLAGS = ("backend", "nodes", "workload", "keys", "concurrency", "rate", "recovery", "mode", "n", "r", "w",
              "fsync", "target", "seed", "histories")


def cmd_explore(args: argparse.Namespace) -> int:
    from harness.explore.display import ExploreDisplay
    from harness.explore.folder import ExploreFolder, summary
    from harness.explore.real_runs import RealRunner
    from harness.explore.search import Explorer
    from harness.runs import histories_root
    from harness.signals import stop_on_signals

    budget = seconds_text("--budget", args.budget)
    number("--reliable", args.reliable, 0.0, 1.0, lo_open=True)
    number("--replays", args.replays, 0, 100, integer=True)
    shrink_budget = seconds_text("--shrink-budget", args.shrink_budget) if args.shrink_budget else budget
    if args.resume:
        folder = ExploreFolder.open(args.resume)
        settings = folder.settings()["settings"]
        if any(getattr(args, f, None) is not None for f in (*SPEC_FLAGS, "spec", "nemesis", "set", "vary",
                                                            "checkers", "max_run", "max_faults", "confirm")):
            raise UserError("--resume takes its settings from the explore folder; give only --budget, "
                            "--replays and --no-display with it")
    else:
        settings = _settings(args)
    space, base = _space(settings)
    if not args.resume:
        folder = ExploreFolder.create(histories_root(base.histories))
        folder.write_settings(settings)
    live = not args.no_display and sys.stderr.isatty()
    display = ExploreDisplay(budget, live=live, shrink_budget=shrink_budget)
    runner = RealRunner(settings["spec"], settings["overrides"], folder, tuple(settings["checkers"]),
                        on_start=display.started)

    def on_case(tried: Any, state: Any) -> None:
        folder.log(tried)
        display.finished(tried, state)

    explorer = Explorer(space, runner, budget=budget, shrink_budget=shrink_budget, confirm=settings["confirm"], database=folder.database,
                        on_case=on_case, first_number=folder.tried_before() + 1)
    print(f"dynharness: explore {folder.root}: {base.workload.name} on {base.nodes} {base.backend} nodes, "
          f"faults {','.join(space.faults)}, runs up to {space.max_run:g} s, budget {budget:g} s "
          f"(+ {shrink_budget:g} s to shrink), "
          f"a failure must fail {settings['confirm']} of {settings['confirm']} runs", file=sys.stderr)
    interrupted: KeyboardInterrupt | None = None
    replayed: dict[int, dict[str, Any]] = {}     # case number -> its replays, across rounds
    replays = None
    with stop_on_signals(), display:
        try:
            state, replays = _search(explorer, folder, args, display, replayed)
        except KeyboardInterrupt as e:
            interrupted, state = e, explorer.state
    if interrupted is not None and replayed and (state.minimal is None or state.minimal.number in replayed):
        replays = _keep_best(folder, state, replayed, math.ceil(args.reliable * args.replays))
    elif replays is None and state.minimal is not None:   # no replays asked, or interrupted before this one's
        folder.write_reproducer(state.minimal)
        if replayed:
            replays = {"case": state.minimal.number, "reliable": None, "candidates": list(replayed.values())}
    folder.write_settings(settings, summary(state, replays))
    _report(folder, state, replays)
    if interrupted is not None:
        raise interrupted
    return 1 if state.minimal is not None else 0


def _settings(args: argparse.Namespace) -> dict[str, Any]:
    """What an explore is (stored in explore.json; ``--resume`` reads it back)."""
    from harness import plugins
    from harness.cli.run import overrides_from_args
    from harness.spec import parse_value

    overrides = overrides_from_args(args)
    overrides.setdefault("seed", random.randrange(2**31))   # every case's runs: the same ops, other timings
    checkers = [c.strip() for c in (args.checkers or "").split(",") if c.strip()]
    unknown = [c for c in checkers if c not in plugins.names("checkers")]
    if unknown:
        raise UserError(f"--checkers: unknown checker(s) {', '.join(unknown)} "
                        f"(known: {', '.join(plugins.names('checkers'))})")
    vary: dict[str, list[Any]] = {}
    for item in args.vary or ():
        key, sep, values = item.partition("=")
        picked = [parse_value(v.strip()) for v in values.split(",") if v.strip()]
        if not sep or not key.strip() or not picked:
            raise UserError(f"--vary expects dotted.key=V1,V2,..., got {item!r}")
        vary[key.strip()] = picked
    max_run = seconds_text("--max-run", args.max_run or "15s")
    return {"spec": args.spec, "overrides": overrides, "checkers": checkers, "vary": vary, "max_run": max_run,
            "max_faults": _bounded("--max-faults", args.max_faults, 4, 1, 10),
            "confirm": _bounded("--confirm", args.confirm, 3, 1, 20)}


def _bounded(flag: str, v: int | None, default: int, lo: int, hi: int) -> int:
    if v is None:
        return default
    if not lo <= v <= hi:
        raise UserError(f"{flag} must be {lo}-{hi}, got {v}")
    return v


def _space(settings: Mapping[str, Any]) -> tuple[Any, Any]:
    """The search space and the base spec (validated as ``run`` would, so nothing it cannot do runs)."""
    from harness import plugins
    from harness.explore.case import space_of
    from harness.runner import replica_sets
    from harness.spec import load_spec
    from harness.workloads import build as build_workload
    from nemeses.schedule import NemesisSpec, replicas_refusal

    base = load_spec(settings["spec"], {**settings["overrides"], "duration": settings["max_run"],
                                        "nemesis.allow_unscheduled": True})
    for key, values in settings["vary"].items():   # each value alone must make a valid spec
        for v in values:
            load_spec(settings["spec"], {**settings["overrides"], "duration": settings["max_run"],
                                         "nemesis.allow_unscheduled": True, key: v})
    nspec = NemesisSpec.from_mapping(dict(base.nemesis))
    vary = {k: tuple(dict.fromkeys(v)) for k, v in settings["vary"].items()}
    target = plugins.target(base.target_kind)
    replicas = []    # where the target can say, a step may hit every replica of a key at once
    if replicas_refusal(target) is None:
        keys = build_workload(base.workload, base.concurrency, base.node_names).final_keys()
        replicas = replica_sets(base, target, keys)
    space = space_of(nspec, base.node_names, max_run=settings["max_run"], keys=base.workload.keys,
                     concurrency=base.concurrency, rate=base.rate, vary=vary, max_steps=settings["max_faults"],
                     replica_sets=replicas)
    return space, base


#: failing cases tried as the reproducer per round, smallest first, before the search goes on
MAX_REPRODUCER_CANDIDATES = 3


def _search(explorer: Any, folder: Any, args: argparse.Namespace, display: Any,
            replayed: dict[int, dict[str, Any]]) -> tuple[Any, dict[str, Any] | None]:
    """Search, then (with ``--replays``) replay the reproducer; while no candidate reproduces
    reliably and search budget is left, search on with the replay bar as the confirmation (see
    :meth:`Explorer.search_on`). The final state and the replays' summary (None without replays;
    then ``minimal/`` is still to be written); ``replayed`` gets every candidate's replays."""
    need = math.ceil(args.reliable * args.replays)
    while True:
        state = explorer.run()
        if state.minimal is None:   # nothing found, or a round found nothing new: the best replayed
            return state, (_keep_best(folder, state, replayed, need) if replayed else None)
        if not args.replays:
            return state, None
        before = set(replayed)
        replays = _reliable_reproducer(folder, state, args.replays, args.reliable, display, replayed)
        if replays["reliable"] or not explorer.search_on(replayed, confirm=args.replays):
            return state, replays
        print(f"explore: no failing case reproduced in {math.ceil(args.reliable * args.replays)} of "
              f"{args.replays} replays (case(s) {', '.join(str(n) for n in replayed if n not in before)}); "
              f"searching on for one that fails {args.replays} of {args.replays} runs", file=sys.stderr)


def _reliable_reproducer(folder: Any, state: Any, times: int, reliable: float, display: Any,
                         replayed: dict[int, dict[str, Any]] | None = None) -> dict[str, Any]:
    """Replay the minimal case ``times`` times; if it fails in fewer than ``reliable`` of them (a
    shrunk case can be marginal: it passed its confirmation by luck), try the next smallest
    confirmed failures the same way (none replayed before: ``replayed``), and keep the first that
    is reliable, else the one that failed most often. ``state.minimal`` becomes the kept case,
    ``minimal/`` holds it."""
    from harness.explore.case import size

    replayed = {} if replayed is None else replayed
    need = math.ceil(reliable * times)
    others = sorted((t for t in state.failures if t.number != state.minimal.number),
                    key=lambda t: (size(t.case, t.actions), -t.number))
    candidates = [t for t in (state.minimal, *others) if t.number not in replayed][:MAX_REPRODUCER_CANDIDATES]
    for case in candidates:
        folder.write_reproducer(case)
        verdicts = _replay(folder, case.number, times, display)
        replayed[case.number] = {"case": case.number, "runs": times, "invalid": verdicts.count("invalid"),
                                 "verdicts": verdicts}
        if verdicts.count("invalid") >= need:
            break
    return _keep_best(folder, state, replayed, need)


def _keep_best(folder: Any, state: Any, replayed: Mapping[int, Mapping[str, Any]], need: int) -> dict[str, Any]:
    """Of the replayed cases the last that reached ``need`` (each round goes on only when none
    did), else the first of those that failed most often: ``state.minimal`` and ``minimal/``."""
    order = list(replayed)
    reliable = [n for n in order if replayed[n]["invalid"] >= need]
    best = reliable[-1] if reliable else max(order, key=lambda n: (replayed[n]["invalid"], -order.index(n)))
    kept = next(t for t in state.tried if t.number == best)
    folder.write_reproducer(kept)
    state.minimal = kept
    return {**replayed[best], "reliable": replayed[best]["invalid"] >= need, "candidates": list(replayed.values())}


def _replay(folder: Any, number: int, times: int, display: Any) -> list[str]:
    """Run the stored reproducer ``times`` times exactly as a user would (its spec.json, its schedule)."""
    from harness.runner import run_test
    from harness.spec import load_spec

    verdicts = []
    for i in range(1, times + 1):
        display.running = f"replay {i} of {times} of case {number}"
        spec = load_spec(folder.minimal / "spec.json", {"name": f"replay-{number:04d}-{i}",
                                                        "replay_schedule": str(folder.minimal)})
        verdicts.append(run_test(spec, display=False, histories=folder.root / "replays").verdict)
    return verdicts


_STOPPED = {"shrunk": "the failure is shrunk as far as it goes", "budget": "the budget is spent",
            "grown": "a failure that did not replay reliably, grown one step (longer faults, more keys and "
                     "clients), fails every run",
            "no-failure": "no case left to try", "interrupted": "interrupted", "broken": "runs cannot run"}


def _report(folder: Any, state: Any, replays: Mapping[str, Any] | None) -> None:
    from harness.explore.case import describe

    out = sys.stdout
    print(f"explore: {len(state.tried)} case(s) in {state.elapsed():.0f} s ({state.count('pass')} pass, "
          f"{state.count('fail')} fail, {state.count('flaky')} flaky, {state.count('unknown')} unknown"
          + (f", {state.count('unreliable')} failed but not in their replays" if state.count("unreliable") else "")
          + "); "
          f"stopped: {_STOPPED.get(state.stopped, state.stopped)}", file=out)
    if state.flaky:
        print(f"flaky (failed some runs, not all): cases {', '.join(str(t.number) for t in state.flaky)}", file=out)
    m = state.minimal
    if m is None:
        print(f"no failing case found; the search log: {folder.root / 'search.jsonl'}", file=out)
        return
    print(f"minimal failing case {m.number} after {state.shrink_steps} shrink step(s): {m.case.duration:g} s, "
          f"{m.case.keys} key(s), {m.case.concurrency} client(s), {m.case.rate:g} ops/s"
          + "".join(f", {k}={v}" for k, v in m.case.vary.items()), file=out)
    for line in describe(m.actions) or ["no fault (it fails without one)"]:
        print(f"  {line}", file=out)
    checkers = sorted({c for a in m.attempts for c in a.invalid_checkers})
    print(f"  invalid in {len(m.attempts)} of {len(m.attempts)} runs: {', '.join(checkers) or 'verdict'}", file=out)
    if replays:
        for r in replays["candidates"]:
            print(f"replays of case {r['case']}: {r['invalid']} of {r['runs']} invalid", file=out)
        if replays["reliable"] is False:
            print(f"no failing case reproduced reliably; the reproducer is case {m.number}, the one that failed "
                  f"most often", file=out)
    print(f"reproduce: dynharness run --spec {folder.minimal / 'spec.json'} --replay-schedule {folder.minimal}",
          file=out)


def register(sub: Any) -> None:
    p = sub.add_parser("explore", help="search fault schedules for a failure and shrink it to a reproducer",
                       description="Search the fault schedules (and workload sizes) a spec allows with hypothesis, "
                                   "each case a short real run; shrink a confirmed failure to a minimal reproducer.",
                       epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--spec", metavar="FILE", help="the base test spec; its values bound the search")
    p.add_argument("--budget", default="10m", metavar="TIME", help="time to search, e.g. 600, 90s, 10m (default 10m)")
    p.add_argument("--shrink-budget", metavar="TIME", help="time to shrink a failure, from when it is "
                                                             "confirmed (default: as --budget)")
    p.add_argument("--max-run", metavar="TIME", help="longest run of a case (default 15s)")
    p.add_argument("--checkers", metavar="C1,C2", help="a case fails when one of these is invalid "
                                                        "(default: the run's verdict is invalid)")
    p.add_argument("--confirm", type=int, metavar="K", help="runs a failure must fail, all of them (default 3)")
    p.add_argument("--max-faults", type=int, metavar="K", help="fault steps per case, at most (default 4)")
    p.add_argument("--vary", action="append", metavar="KEY=V1,V2", help="a spec field the search may pick, "
                                                                        "simplest first (repeatable)")
    p.add_argument("--replays", type=int, default=0, metavar="K",
                   help="run the reproducer K more times at the end; if it fails in too few (--reliable), "
                        "try the next smallest failures and keep the most reliable")
    p.add_argument("--reliable", type=float, default=0.8, metavar="F",
                   help="share of --replays a reproducer must fail in (default 0.8)")
    p.add_argument("--resume", metavar="DIR", help="continue an explore folder (its failures are tried first)")
    p.add_argument("--no-display", action="store_true", help="plain progress lines instead of the live panel")
    g = p.add_argument_group("base spec fields (as in run; --set reaches every other)")
    g.add_argument("--backend", choices=("local", "docker", "ssh"))
    g.add_argument("--nodes", type=int, metavar="K")
    g.add_argument("--workload", metavar="NAME")
    g.add_argument("--keys", type=int, metavar="K", help="most keys a case uses")
    g.add_argument("--concurrency", type=int, metavar="C", help="most clients a case uses")
    g.add_argument("--rate", type=float, metavar="OPS")
    g.add_argument("--recovery", type=float, metavar="S")
    g.add_argument("--target", metavar="KIND")
    for flag in ("n", "r", "w"):
        g.add_argument(f"--{flag}", type=int, metavar=flag.upper())
    g.add_argument("--mode", metavar="MODE")
    g.add_argument("--fsync", metavar="WHEN")
    g.add_argument("--nemesis", metavar="F1,F2", help="the fault kinds the search may use")
    g.add_argument("--seed", type=int, help="seed of the runs' ops (default random, recorded)")
    g.add_argument("--histories", metavar="DIR")
    g.add_argument("--set", action="append", metavar="KEY=VALUE")
    p.set_defaults(func=cmd_explore)
