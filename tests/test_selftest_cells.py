"""One selftest cell per kind of bug today's checkers catch: a real cluster started with the bug, its run invalid.

Each cell is the selftest's own (``harness.selftest.plan``, run by the campaign runner in a child
process), with one seed and no clean-store run, to stay inside a CI budget (about 3 minutes for
all). The full selftest, every bug in 3 seeds and the clean store through the same scenarios, is
``dynharness selftest`` (docs/bug-zoo.md has its measured table).
"""
from __future__ import annotations

import subprocess

import pytest

from harness import selftest
from harness.campaign import SubprocessCellRunner, run_campaign
from targets.dynamo.zoo import ZOO

pytestmark = pytest.mark.cluster

#: kind of bug -> (the bug run for it, the checker expected to catch it)
KINDS = {
    "coordinator": ("quorum-counts-self-twice", "staleness"),
    "versioning": ("merge-by-clock-size", "lost-writes"),
    "hinted handoff": ("handoff-skips-known", "lost-writes"),
    "gossip": ("unreachable-never-cleared", "lost-writes"),
    "anti-entropy": ("ae-always-in-sync", "lost-writes"),
    "ring": ("ring-wrap-truncated", "perf"),
    "durability": ("storage-drops-wal", "lost-writes"),
    "tombstone reaping": ("tombstone-grace-ms", "resurrections"),
}


@pytest.mark.parametrize("kind", list(KINDS))
def test_the_bug_of_each_kind_is_caught_by_its_first_scenario(kind, tmp_path):
    bug, checker = KINDS[kind]
    defn = selftest.plan("dynamo", [bug], seeds=1, clean=False)
    first = ZOO.bugs[bug].scenarios[0]
    defn = type(defn)(defn.name, defn.description, tuple(c for c in defn.cells if c.labels["scenario"] == first),
                      defn.spec_path, defn.source)
    camp = run_campaign(defn, histories=tmp_path, runner=SubprocessCellRunner(tmp_path))
    rows = [r for r in selftest.table(camp, ZOO) if r.scenario == first]
    assert len(rows) == 1 and rows[0].ok, (rows, {c: r.error for c, r in camp.cells.items()})
    assert checker in rows[0].checkers
    left = subprocess.run(["pgrep", "-af", str(tmp_path)], capture_output=True, text=True).stdout
    assert not [ln for ln in left.splitlines() if "pgrep" not in ln]
