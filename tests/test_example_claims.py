"""Every example spec shows what its header says: each runs over 3 seeds and its claim is checked
(``DYNHARNESS_EXAMPLE_SEEDS=3``; the README's test command runs seed 1 only, see :data:`SEEDS`).

Each example's header ends with a ``# Shows:`` line; :data:`CLAIMS` holds the same claim as code,
and a test fails when an example stops showing it (a store change that hides Riak's lost writes,
or an example whose contrast was luck of one seed). Partition and clock examples run shortened
(``SHORT``: 20 s, a fault every 5 s) so the whole file stays a few minutes; the shortened run
still has the example's faults, topology and settings. Numbers measured are in the commit log.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from harness.runner import run_test
from harness.spec import load_spec
from tests.conftest import require

pytestmark = [pytest.mark.cluster, pytest.mark.slow]
EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: Seeds each claim is checked over: 1 in the README's test command (CI's 30-minute budget: the
#: full three-seed check is about 21 runs, 12-15 minutes), 3 with ``DYNHARNESS_EXAMPLE_SEEDS=3``.
SEEDS = tuple(range(1, int(os.environ.get("DYNHARNESS_EXAMPLE_SEEDS", "1")) + 1))
SHORT = {"duration": 20, "nemesis.interval": 5}

Results = dict[str, Any]


def run(example: str, seed: int, tmp_path: Path, **overrides: Any) -> Results:
    """One real run of an example (seed and overrides applied): its results.json."""
    spec = load_spec(EXAMPLES / f"{example}.toml", {"seed": seed, "histories": str(tmp_path), **overrides})
    out = run_test(spec)
    assert out.error is None, out.error
    return json.loads((out.run_dir / "results.json").read_text())


def counts(res: Results, checker: str) -> dict[str, Any]:
    return res["checkers"][checker]["counts"]


#: example -> (overrides, the claim its header's "Shows:" line makes, as a test of one run's results)
CLAIMS: dict[str, tuple[dict[str, Any], Callable[[Results], bool]]] = {
    "riak-lww": (SHORT, lambda r: counts(r, "lost-writes")["lost_writes"] > 0),
    "riak-siblings": (SHORT, lambda r: counts(r, "lost-writes")["lost_writes"] == 0
                      and r["checkers"]["resurrections"]["verdict"] == "valid"),
    "clock-skew-lww": (SHORT, lambda r: counts(r, "lost-writes")["lost_writes"] > 0),
    "register-linearizability": (SHORT, lambda r: r["checkers"]["linearizable"]["verdict"] == "invalid"),
    "cart-deletes": ({}, lambda r: r["verdict"] == "valid" and counts(r, "resurrections")["deletes_judged"] > 0
                     and counts(r, "resurrections")["resurrected_deletes"] == 0),
}


def test_every_example_has_a_claim_and_says_it() -> None:
    for path in sorted(EXAMPLES.glob("*.toml")):
        assert "# Shows:" in path.read_text(), f"{path.name} does not say what it shows"
    assert set(CLAIMS) | {"sibling-explosion", "docker-cart"} == {p.stem for p in EXAMPLES.glob("*.toml")}


#: examples whose claim a seed has been seen to break: a finding about the store, kept visible here
#: until fixed rather than hidden by changing the example
#: (cart-deletes' seed-2 resurrected delete was one: fallbacks reaped a tombstone whose hints were still
#: undelivered; fixed in antientropy.reaper_loop, tests/test_store_replication.py)
FOUND_BROKEN: dict[str, str] = {}


@pytest.mark.parametrize("example", [pytest.param(e, marks=pytest.mark.xfail(reason=FOUND_BROKEN[e], strict=False))
                                     if e in FOUND_BROKEN else e for e in sorted(CLAIMS)])
def test_example_shows_its_claim_in_every_seed(example: str, tmp_path: Path) -> None:
    overrides, claim = CLAIMS[example]
    results = [run(example, seed, tmp_path, **overrides) for seed in SEEDS]
    assert all(claim(r) for r in results), [r["summary"] for r in results]


def test_sibling_explosion_dvv_keeps_fewer_siblings_than_vclock_in_every_seed(tmp_path: Path) -> None:
    """The contrast the example is for: dvv's max below vclock's, and only vclock's siblings beyond the
    writes that were ever concurrent (the checker's concurrency bound: false concurrency)."""
    got = {seed: {mode: counts(run("sibling-explosion", seed, tmp_path, **{"target.mode": mode}), "siblings")
                  for mode in ("vclock", "dvv")} for seed in SEEDS}
    summary = {s: {m: (c["max_siblings"], c["keys_over_concurrency_bound"]) for m, c in g.items()} for s, g in got.items()}
    for g in got.values():
        assert g["dvv"]["max_siblings"] < g["vclock"]["max_siblings"], summary
        assert g["dvv"]["keys_over_concurrency_bound"] == 0 < g["vclock"]["keys_over_concurrency_bound"], summary


@pytest.mark.docker
def test_docker_cart_is_valid_with_faults_done_in_containers(tmp_path: Path) -> None:
    from harness.backends.docker_cluster import engine_available
    require(engine_available(), "no Docker engine: install docker.io and start dockerd (.ci/docker-setup.sh)")
    r = run("docker-cart", SEEDS[0], tmp_path)
    assert counts(r, "lost-writes")["lost_writes"] == 0 and r["faults"], r["summary"]
