"""explore's search and shrinking against an in-process fake whose bug fires for a known schedule.

The fake runs nothing: it reads the schedule a case became and says "invalid" exactly when the
bug's trigger is in it, so these tests are fast and deterministic (hypothesis is seeded) and
check the search itself: it finds the trigger, shrinks it to the faults the bug needs and no
more, never calls a flaky case a failure, keeps to its budget, remembers failures across runs
(its example database), and stops with what it found on Ctrl-C.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import pytest

from harness.errors import UserError
from harness.explore.case import (Case, FaultStep, Space, build_schedule, cases, describe, fault_actions,
                                  nodes_touched, space_of)
from harness.explore.search import Attempt, CaseRejected, Explorer
from nemeses.schedule import NemesisSpec, dump_schedule, load_schedule

NODES = ["n1", "n2", "n3", "n4", "n5"]


def make_space(faults=("partition", "crash", "clock"), **kw) -> Space:
    return space_of(NemesisSpec.from_mapping({"faults": list(faults)}), NODES, max_run=kw.pop("max_run", 15),
                    keys=10, concurrency=10, rate=200, **kw)


def kill_depth(actions) -> float | None:
    """How far into a partition a node is killed (the deepest such kill), None when none is."""
    windows, start = [], None
    for a in actions:
        if a.op.f == "start-partition":
            start = a.at
        elif a.op.f == "stop-partition" and start is not None:
            windows.append((start, a.at))
            start = None
    depths = [a.at - s for a in actions if a.op.f == "kill" for s, e in windows if s <= a.at < e]
    return max(depths) if depths else None


def kill_during_partition(actions) -> bool:
    """The fake bug: a node is killed while a partition is on."""
    return kill_depth(actions) is not None


@dataclass
class FakeRunner:
    """Says invalid when ``trigger(actions, case)``; ``fail_runs`` limits how many attempts of a
    triggering case fail (a flaky bug); records every call."""

    trigger: object = staticmethod(lambda actions, case: kill_during_partition(actions))
    fail_runs: int = 99
    calls: list = field(default_factory=list)

    def run(self, case, actions, number, attempt):
        self.calls.append((number, attempt))
        fires = self.trigger(actions, case) and attempt <= self.fail_runs
        return Attempt("invalid" if fires else "valid", fires, run_dir=f"/runs/{number}-{attempt}",
                       invalid_checkers=("lost-writes",) if fires else ())


def test_finds_the_trigger_and_shrinks_it_to_the_two_faults_it_needs():
    runner = FakeRunner()
    state = Explorer(make_space(), runner, budget=600, confirm=3, seed=1).run()
    assert state.stopped == "shrunk"
    m = state.minimal
    assert m is not None and m.outcome == "fail" and kill_during_partition(m.actions)
    assert fault_actions(m.actions) == 2                      # a partition and a kill, nothing else
    assert {a.op.f for a in m.actions} == {"start-partition", "stop-partition", "kill", "start", "heal"}
    kill = next(a for a in m.actions if a.op.f == "kill")
    assert len(kill.op.value["nodes"]) == 1                   # one node killed, not a minority or all
    assert (m.case.keys, m.case.concurrency, m.case.duration) == (1, 1, 5.0)   # the smallest workload
    assert all(s.hold == 0.5 for s in m.case.steps)           # the shortest windows
    assert state.shrink_steps >= 1 and state.failures[0] is not m


def test_every_failure_failed_every_one_of_its_runs():
    runner = FakeRunner()
    state = Explorer(make_space(), runner, budget=600, confirm=3, seed=2).run()
    for t in state.tried:
        runs = [a for n, a in runner.calls if n == t.number]
        if t.outcome == "fail":
            assert runs == [1, 2, 3] and all(a.failing for a in t.attempts)
        else:
            assert runs == [1]                                   # a passing case costs one run


def test_a_flaky_bug_is_never_a_failure():
    runner = FakeRunner(fail_runs=2)                             # fails 2 of 3 runs
    state = Explorer(make_space(), runner, budget=600, confirm=3, seed=1, max_cases=60).run()
    assert state.minimal is None and state.stopped == "no-failure"
    assert state.flaky and all(t.outcome == "flaky" for t in state.flaky)
    assert all([a.failing for a in t.attempts] == [True, True, False] for t in state.flaky)


def test_nothing_is_found_in_a_clean_store():
    runner = FakeRunner(trigger=lambda actions, case: False)
    state = Explorer(make_space(), runner, budget=600, seed=3, max_cases=40).run()
    assert state.minimal is None and state.count("pass") == len(state.tried)
    assert 20 <= len(state.tried) <= 40          # 40 examples; the same run twice runs once


def test_the_budget_stops_new_runs():
    now = itertools.count()                                      # each clock read: one second later
    runner = FakeRunner(trigger=lambda actions, case: False)
    state = Explorer(make_space(), runner, budget=30, seed=1, clock=lambda: float(next(now))).run()
    assert state.stopped == "budget"
    assert 0 < len(runner.calls) < 30


def test_a_confirmation_under_way_is_finished_when_the_budget_ends():
    now = itertools.count()
    runner = FakeRunner(trigger=lambda actions, case: True)      # every case fails
    state = Explorer(make_space(), runner, budget=2, seed=1, clock=lambda: float(next(now))).run()
    assert state.minimal is not None and len(state.minimal.attempts) == 3


def test_the_example_database_tries_a_found_failure_first(tmp_path):
    db = tmp_path / "hypothesis"
    # no seed: a seeded hypothesis keeps no database
    first = Explorer(make_space(), FakeRunner(), budget=600, database=db).run()
    assert first.minimal is not None
    again = Explorer(make_space(), FakeRunner(), budget=600, database=db).run()
    assert again.tried[0].outcome == "fail"
    assert again.tried[0].case == first.minimal.case


def test_ctrl_c_keeps_what_was_found():
    class Interrupting(FakeRunner):
        def run(self, case, actions, number, attempt):
            if len(self.calls) >= 40:
                raise KeyboardInterrupt
            return super().run(case, actions, number, attempt)

    explorer = Explorer(make_space(), Interrupting(), budget=600, seed=1)
    with pytest.raises(KeyboardInterrupt):
        explorer.run()
    state = explorer.state
    assert state.stopped == "interrupted"
    assert state.tried[-1].note == "interrupted"
    assert state.failures and state.minimal in state.failures     # seed 1: two failures before the 40th run


def test_runs_that_cannot_run_stop_the_search_with_their_reason():
    class Broken(FakeRunner):
        def run(self, case, actions, number, attempt):
            self.calls.append((number, attempt))
            return Attempt("failed", False, error="cannot start node n1: port in use")

    runner = Broken()
    with pytest.raises(UserError, match="3 cases in a row could not run.*port in use"):
        Explorer(make_space(), runner, budget=600, seed=1).run()
    assert len(runner.calls) == 3


def test_a_case_that_makes_no_valid_spec_is_rejected_not_run():
    class Rejecting(FakeRunner):
        def run(self, case, actions, number, attempt):
            if case.vary.get("target.r") == 4:
                raise CaseRejected("r must be at most n")
            return super().run(case, actions, number, attempt)

    space = make_space(vary={"target.r": (2, 4)})
    state = Explorer(space, Rejecting(), budget=600, seed=1).run()
    assert state.count("rejected") > 0
    assert state.minimal is not None and state.minimal.case.vary == {"target.r": 2}


@pytest.mark.parametrize("faults", [(), ])
def test_no_faults_to_vary_is_refused(faults):
    with pytest.raises(UserError, match="no faults to vary"):
        make_space(faults)


@pytest.mark.parametrize("budget", [0, -1, float("nan"), float("inf")])
def test_a_budget_must_be_positive_and_finite(budget):
    with pytest.raises(UserError, match="budget"):
        Explorer(make_space(), FakeRunner(), budget=budget)


def test_same_part_steps_never_overlap_and_late_steps_are_left_out():
    space = make_space()
    case = Case(steps=(FaultStep("partition", 1.0, 3.0), FaultStep("partition", 2.0, 1.0),
                       FaultStep("crash", 1.5, 2.0), FaultStep("clock", 1.0, 2.0, pick=3),
                       FaultStep("crash", 4.0, 9.0)),
                duration=8.0, keys=1, concurrency=1, rate=100)
    actions = build_schedule(case, space)
    fs = [(a.at, a.op.f) for a in actions]
    assert (1.0, "start-partition") in fs and (4.0, "stop-partition") in fs
    assert (4.5, "start-partition") in fs and (5.5, "stop-partition") in fs    # waited for the first
    assert (1.5, "kill") in fs and (3.5, "start") in fs
    assert sum(1 for _, f in fs if f == "kill") == 1                           # 4.0 + 9.0 > 8 - 0.5: left out
    assert fs[-1] == (5.5, "heal") and [a.at for a in actions] == sorted(a.at for a in actions)
    assert fault_actions(actions) == 4
    assert len(describe(actions)) == 4 and "for 3 s" in describe(actions)[0]


def test_a_case_schedule_replays_exactly(tmp_path):
    from hypothesis import given, settings

    space = make_space()

    @settings(max_examples=30, deadline=None)
    @given(cases(space))
    def roundtrip(case):
        actions = build_schedule(case, space)
        assert actions == build_schedule(case, space)             # deterministic
        dump_schedule(tmp_path / "s.json", actions)
        assert load_schedule(tmp_path / "s.json") == actions
        assert actions[-1].op.f == "heal" and all(a.at <= case.duration - 0.5 for a in actions)
        assert 5 <= case.duration <= space.max_run

    roundtrip()


def test_cases_making_the_same_run_run_once():
    runner = FakeRunner()
    explorer = Explorer(make_space(), runner, budget=600, seed=1)
    space = explorer.space
    a = Case((FaultStep("partition", 1, 2), FaultStep("crash", 1.5, 1)), 5, 1, 1, 200)
    b = Case(a.steps + (FaultStep("crash", 4.0, 3.0),), 5, 1, 1, 200)   # its third step does not fit
    assert build_schedule(a, space) == build_schedule(b, space)
    from harness.explore.search import _Failed
    for case in (a, b):
        with pytest.raises(_Failed) as found:
            explorer._test(case)
    assert found.value.tried.case == b and found.value.tried.note == "the same run as case 1"
    assert len(runner.calls) == 3 and len(explorer.state.tried) == 1


def test_nodes_touched_counts_killed_nodes_and_cut_off_ones():
    space = make_space()
    one = build_schedule(Case((FaultStep("crash", 1, 1, "one"),), 5, 1, 1, 100), space)
    every = build_schedule(Case((FaultStep("crash", 1, 1, "all"),), 5, 1, 1, 100), space)
    assert nodes_touched(one) == 1 and nodes_touched(every) == 5


def test_shrinking_cut_short_keeps_the_smallest_failure_so_far():
    from harness.explore.case import size

    now = itertools.count()
    state = Explorer(make_space(), FakeRunner(), budget=10_000, shrink_budget=60, seed=1,
                     clock=lambda: float(next(now))).run()
    assert state.stopped == "budget" and len(state.failures) >= 2
    smallest = min(size(t.case, t.actions) for t in state.failures)
    assert size(state.minimal.case, state.minimal.actions) == smallest
    assert size(state.failures[0].case, state.failures[0].actions) > smallest


def test_a_step_may_hit_every_replica_of_a_key_where_the_target_can_say():
    sets = [("n1", "n2", "n3"), ("n4", "n5", "n1")]
    space = make_space(replica_sets=sets)
    assert "replicas" in space.target_choices and "replicas" not in make_space().target_choices
    for pick, nodes in ((0, ["n1", "n2", "n3"]), (1, ["n4", "n5", "n1"]), (2, ["n1", "n2", "n3"])):
        actions = build_schedule(Case((FaultStep("crash", 1, 1, "replicas", pick),), 5, 1, 1, 100), space)
        assert actions[0].op.f == "kill" and sorted(actions[0].op.value["nodes"]) == sorted(nodes)


@pytest.mark.parametrize("invalid, kept, reliable", [
    ({31: 5}, 31, True),                 # the minimal case reproduces: kept
    ({31: 2, 21: 4, 14: 5}, 21, True),   # it is marginal: the next smallest that reproduces
    ({31: 3, 21: 1, 14: 2}, 31, False),  # none does: the one that failed most often
])
def test_the_reproducer_is_the_smallest_failure_that_replays_reliably(monkeypatch, invalid, kept, reliable):
    from harness.cli import explore as cli_explore
    from harness.explore.search import SearchState, Tried

    space = make_space()

    def failing(number, hold):
        case = Case((FaultStep("partition", 1, hold),), 5, 1, 1, 200)
        return Tried(number, "search", case, tuple(build_schedule(case, space)), outcome="fail")

    state = SearchState(started=0)
    state.tried = [failing(14, 3.0), failing(21, 2.0), failing(31, 1.0)]
    state.minimal = state.tried[2]
    written = []

    class Folder:
        def write_reproducer(self, tried):
            written.append(tried.number)

    monkeypatch.setattr(cli_explore, "_replay",
                        lambda folder, number, times, display: ["invalid"] * invalid.get(number, 0)
                        + ["valid"] * (times - invalid.get(number, 0)))
    replays = cli_explore._reliable_reproducer(Folder(), state, 5, 0.8, display=type("D", (), {})())
    assert state.minimal.number == kept and written[-1] == kept and replays["reliable"] is reliable
    assert [r["case"] for r in replays["candidates"]] == [31, 21, 14][:len(replays["candidates"])]



def test_an_unreliable_reproducer_sends_the_search_on_to_one_that_replays(monkeypatch):
    """A kill at the very start of a partition fails only the first 3 runs (marginal: it passes
    the default 3-of-3 confirmation, then fails 2 of 5 replays); one at least 1 s into it fails
    every run. Shrinking favours the marginal one; the search must go on until the reproducer
    replays reliably, never keeping a case the replays did not bear out."""
    import argparse

    from harness.cli import explore as cli_explore

    deep = lambda actions: (kill_depth(actions) or 0) >= 1.0   # noqa: E731

    @dataclass
    class MarginalRunner(FakeRunner):
        def run(self, case, actions, number, attempt):
            self.calls.append((number, attempt))
            fires = kill_depth(actions) is not None and (deep(actions) or attempt <= 3)
            return Attempt("invalid" if fires else "valid", fires, run_dir=f"/runs/{number}-{attempt}")

    now = itertools.count()
    explorer = Explorer(make_space(), MarginalRunner(), budget=10_000, shrink_budget=10_000, seed=1,
                        clock=lambda: float(next(now)))
    by_number = lambda n: next(t for t in explorer.state.tried if t.number == n)   # noqa: E731

    def replay(folder, number, times, display):
        invalid = times if deep(by_number(number).actions) else 2
        return ["invalid"] * invalid + ["valid"] * (times - invalid)

    monkeypatch.setattr(cli_explore, "_replay", replay)

    class Folder:
        def write_reproducer(self, tried):
            self.written = tried.number

    folder, replayed = Folder(), {}
    state, replays = cli_explore._search(explorer, folder, argparse.Namespace(replays=5, reliable=0.8), None,
                                         replayed)
    unreliable = [t for t in state.tried if t.outcome == "unreliable"]
    assert unreliable and not any(deep(t.actions) for t in unreliable)     # a marginal one was found first
    assert all(replayed[t.number]["invalid"] == 2 for t in unreliable)
    m = state.minimal
    assert deep(m.actions) and replayed[m.number]["invalid"] == 5 and folder.written == m.number
    assert replays["reliable"] is True and replays["case"] == m.number
    # after the first round a failure had to fail 5 of 5 runs: no marginal case failed again
    later = [t for t in state.tried if t.started_s >= state.round_started_s > 0]
    assert later and all(len(t.attempts) == 5 for t in later if t.outcome == "fail")
    assert not any(t.outcome == "fail" and not deep(t.actions) for t in later)


def test_a_new_round_tries_the_unreliable_case_grown_first(monkeypatch):
    """A partition held 0.5 s fails only the first 3 runs (passes confirmation, fails replays);
    held 1 s or more it always fails. The new round's first case is the marginal one grown
    (twice the hold, keys and clients, same start and nodes), which fails 5 of 5 and is kept
    at once rather than shrunk from a random large case."""
    import argparse

    from harness.cli import explore as cli_explore

    def hold(actions):
        starts = [a.at for a in actions if a.op.f == "start-partition"]
        stops = [a.at for a in actions if a.op.f == "stop-partition"]
        return max((e - s for s, e in zip(starts, stops)), default=None)

    @dataclass
    class HoldRunner(FakeRunner):
        def run(self, case, actions, number, attempt):
            self.calls.append((number, attempt))
            h = hold(actions)
            fires = h is not None and (h >= 1.0 or attempt <= 3)
            return Attempt("invalid" if fires else "valid", fires, run_dir=f"/runs/{number}-{attempt}")

    now = itertools.count()
    explorer = Explorer(make_space(faults=("partition",)), HoldRunner(), budget=10_000, shrink_budget=10_000,
                        seed=1, clock=lambda: float(next(now)))
    by_number = lambda n: next(t for t in explorer.state.tried if t.number == n)   # noqa: E731

    def replay(folder, number, times, display):
        invalid = times if hold(by_number(number).actions) >= 1.0 else 2
        return ["invalid"] * invalid + ["valid"] * (times - invalid)

    class Folder:
        def write_reproducer(self, tried):
            self.written = tried.number

    monkeypatch.setattr(cli_explore, "_replay", replay)
    replayed = {}
    state, replays = cli_explore._search(explorer, Folder(), argparse.Namespace(replays=5, reliable=0.8), None,
                                         replayed)
    marginal = [t for t in state.tried if t.outcome == "unreliable"]
    assert len(marginal) == 1 and hold(marginal[0].actions) == 0.5
    m = state.minimal
    assert state.stopped == "grown" and m.number == marginal[0].number + 1 and len(m.attempts) == 5
    (before,), (after,) = marginal[0].case.steps, m.case.steps
    assert (after.kind, after.at, after.targets, after.pick, after.hold) == (before.kind, before.at, before.targets,
                                                                             before.pick, 2 * before.hold)
    assert (m.case.keys, m.case.concurrency) == (min(10, 2 * marginal[0].case.keys),
                                                 min(10, 2 * marginal[0].case.concurrency))
    assert replayed[m.number]["invalid"] == 5 and replays["reliable"] is True and replays["case"] == m.number
