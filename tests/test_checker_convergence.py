"""The convergence checker on hand-built replica snapshots: agree, diverge, under-replicated, stray,
unread, none stored; and the runner's rule that a target without snapshots skips it, saying why."""
from __future__ import annotations

from typing import Any

from checkers.base import CheckContext, Verdict
from checkers.convergence import ConvergenceChecker, examine
from harness.history import History
from harness.runs import applicable

PREF = ["n1", "n2", "n3"]


def copy(*versions: str, tombstones: int = 0) -> dict[str, Any]:
    return {"held": True, "versions": list(versions), "values": [f"v-{v}" for v in versions], "tombstones": tombstones}


ABSENT = {"held": False, "versions": [], "values": [], "tombstones": 0}


def round_of(keys: dict[str, dict[str, Any]], pref: list[str] = PREF, errors: dict[str, str] | None = None) -> dict:
    return {"keys": {k: {"preference": pref, "replicas": reps} for k, reps in keys.items()},
            "errors": errors or {}, "t_s": 0.0, "t_ns": 1_000}


def snapshot(last: dict, first: dict | None = None, agreed: float | None = None) -> dict:
    return {"taken": True, "timeout_s": 5.0, "waited_s": 5.0, "rounds": 3, "agreed_after_s": agreed,
            "first": first or last, "last": last}


def check(snap: dict | None) -> Any:
    return ConvergenceChecker().check(History.of([]), CheckContext(replicas=snap))


def test_replicas_that_agree_are_valid_and_say_when_they_agreed() -> None:
    agreed = round_of({"k1": {n: copy("n1:1", "n2:4") for n in PREF},
                       "gone": {"n1": copy(tombstones=1), "n2": ABSENT, "n3": copy(tombstones=1)},
                       "never": {n: ABSENT for n in PREF}})
    diverged = round_of({"k1": {"n1": copy("n1:1"), "n2": copy("n1:1", "n2:4"), "n3": copy("n1:1", "n2:4")},
                         "gone": {n: ABSENT for n in PREF}, "never": {n: ABSENT for n in PREF}})
    r = check(snapshot(agreed, first=diverged, agreed=1.5))
    assert r.verdict == Verdict.VALID, r.reason
    assert r.counts["divergent_keys"] == 0 and r.counts["under_replicated_keys"] == 0
    assert r.counts["converged_after_s"] == 1.5 and r.counts["disagreeing_at_settle"] == 1
    assert r.counts["keys"] == 3


def test_different_version_sets_are_divergent_and_invalid() -> None:
    r = check(snapshot(round_of({"k1": {"n1": copy("n1:1"), "n2": copy("n1:1", "n2:4"), "n3": copy("n1:1")}})))
    assert r.verdict == Verdict.INVALID
    assert r.counts["divergent_keys"] == 1 and r.counts["under_replicated_keys"] == 0
    (a,) = r.anomalies
    assert a.kind == "divergent-replicas" and a.key == "k1" and "n2: {n1:1, n2:4}" in a.description


def test_a_live_value_beside_a_tombstone_is_divergent() -> None:
    r = check(snapshot(round_of({"k": {"n1": copy(tombstones=1), "n2": copy("n3:2"), "n3": copy(tombstones=1)}})))
    assert r.verdict == Verdict.INVALID and r.counts["divergent_keys"] == 1


def test_a_replica_holding_nothing_is_under_replication() -> None:
    r = check(snapshot(round_of({"k": {"n1": copy("n1:1"), "n2": ABSENT, "n3": copy("n1:1")},
                                 "ok": {n: copy("n2:2") for n in PREF}})))
    assert r.verdict == Verdict.INVALID
    assert r.counts["under_replicated_keys"] == 1 and r.counts["divergent_keys"] == 0
    (a,) = r.anomalies
    assert a.kind == "under-replicated" and "held by 2 of 3 replicas (n2 hold nothing" in a.description


def test_a_copy_outside_the_preference_list_is_reported_not_invalid() -> None:
    keys = {"k": {"n1": copy("n1:1"), "n2": copy("n1:1"), "n3": copy("n1:1"), "n4": copy("n1:1")}}
    r = check(snapshot(round_of(keys)))
    assert r.verdict == Verdict.VALID and r.counts["stray_copies"] == 1
    assert [a.kind for a in r.anomalies] == ["stray-copy"] and "n4" in r.anomalies[0].description


def test_an_unread_replica_is_unknown_and_never_valid() -> None:
    keys = {"k": {"n1": copy("n1:1"), "n2": copy("n1:1")}}
    r = check(snapshot(round_of(keys, errors={"n3": "AdminError: timed out"})))
    assert r.verdict == Verdict.UNKNOWN and r.counts["unread_keys"] == 1
    assert r.details["errors"] == {"n3": "AdminError: timed out"}
    assert not examine(round_of(keys)).agreed


def test_no_snapshot_is_unknown_with_the_reason() -> None:
    assert check(None).verdict == Verdict.UNKNOWN
    r = check({"taken": False, "reason": "the etcd target cannot show one replica's copy (replica-snapshot)"})
    assert r.verdict == Verdict.UNKNOWN and "etcd" in (r.reason or "")


def test_a_run_of_a_target_without_snapshots_skips_the_checker_and_says_why() -> None:
    names = ["linearizable", "perf", "convergence"]
    use, skipped = applicable(names, {"target": {"kind": "etcd"}, "target_capabilities": []})
    assert use == ["linearizable", "perf"]
    assert "which the etcd target does not have" in skipped["convergence"]
    use, skipped = applicable(names, {"target": {"kind": "dynamo"}, "target_capabilities": ["replica-snapshot"]})
    assert use == names and skipped == {}
    use, skipped = applicable(names, {})                       # an imported or older history
    assert use == ["linearizable", "perf"] and "recorded none" in skipped["convergence"]
