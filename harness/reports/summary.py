"""The campaign summary table: one row per cell, the same columns everywhere.

The live table, ``summary.md``, the JUnit properties and the campaign's
``index.html`` all show these columns, formatted the same way, so a number
read in CI means the same thing as the one on the page; each shows the Dask
worker that ran a cell when the campaign ran on workers (``--jobs``/``--scheduler``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

#: (metric key, column title, what it means) in table order.
METRICS: tuple[tuple[str, str, str], ...] = (
    ("lost_writes", "lost", "acknowledged writes missing after heal (count)"),
    ("lost_share", "lost %", "lost writes as a share of acknowledged writes"),
    ("resurrections", "resurr.", "acknowledged removes whose item came back"),
    ("rw_violations", "RYW", "read-your-writes violations"),
    ("session_violations", "session", "all session-guarantee violations: read-your-writes, monotonic reads, "
                                      "monotonic writes, writes-follow-reads"),
    ("stale_read_share", "stale %", "share of reads that missed an acknowledged write"),
    ("linearizable", "linearizable", "linearizability verdict of the register checker"),
    ("max_siblings", "max sib", "largest sibling count a read saw"),
    ("availability", "avail %", "share of client ops that completed ok"),
    ("p999_latency_ms", "p99.9 ms", "99.9th percentile latency of ok ops"),
    # last: the first metric a narrow live table leaves out (harness.cli.table_fit drops the rightmost first)
    ("load_ok_ops_per_s", "ops/s", "ok client ops per second over the load phase (first invoke to last "
                                   "completion of the ops before the final reads)"),
)
SHARES = {"lost_share", "stale_read_share", "availability"}
#: Metrics where bigger is worse (heat maps colour them red as they grow).
BAD_HIGH = {"lost_writes", "lost_share", "resurrections", "max_siblings", "rw_violations", "session_violations",
            "stale_read_share", "p999_latency_ms"}
#: Metrics where bigger is better (heat maps colour them red as they fall below the campaign's best).
GOOD_HIGH = {"load_ok_ops_per_s"}


def fmt_metric(key: str, value: Any) -> str:
    """A metric as the summary shows it: shares in percent, latencies to 0.1 ms, missing as '-'."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if key in SHARES and isinstance(value, (int, float)):
        return f"{100 * value:.1f}%"
    if isinstance(value, float):
        return f"{value:.1f}" if abs(value) >= 1 or value == 0 else f"{value:.3g}"
    return str(value)


@dataclass(frozen=True)
class Row:
    """One cell of a campaign as a summary row."""

    cell: str
    labels: Mapping[str, Any]
    state: str
    verdict: str | None
    metrics: Mapping[str, Any]
    expect_ok: int
    expect_broken: int
    run_dir: str | None
    error: str | None
    seconds: float | None
    worker: str | None = None       # the Dask worker that ran the cell (campaign --jobs/--scheduler)

    def cells_text(self) -> list[str]:
        """The metric columns as text, lost writes as 'count (share)' when acked writes are known."""
        return [fmt_metric(k, self.metrics.get(k)) for k, _, _ in METRICS]


def rows(camp: Any) -> list[Row]:
    """Summary rows of a CampaignRun, in the campaign's cell order."""
    out = []
    for c in camp.defn.cells:
        r = camp.cells.get(c.id)
        if r is None:
            continue
        broken = len(r.broken)
        out.append(Row(c.id, dict(c.labels), r.state, r.verdict, dict(r.metrics), len(r.expectations) - broken, broken,
                       r.run_dir, r.error, r.seconds, r.worker))
    return out


def on_workers(all_rows: list[Row]) -> bool:
    """Whether any cell ran on a Dask worker (the tables then show a worker column)."""
    return any(r.worker for r in all_rows)


def measured(all_rows: list[Row]) -> list[int]:
    """Indexes into METRICS of the metrics some row measured (tables drop all-'-' columns)."""
    return [i for i, (k, _, _) in enumerate(METRICS) if any(r.metrics.get(k) is not None for r in all_rows)]


def label_axes(all_rows: list[Row]) -> list[str]:
    """The axis names that appear in any row's labels (in first-seen order), minus free text."""
    axes: list[str] = []
    for r in all_rows:
        for k in r.labels:
            if k not in axes and k != "description":
                axes.append(k)
    return axes


def expectation_text(r: Row) -> str:
    """'3/3 ok' or '1 broken of 3', '-' when the cell has none."""
    total = r.expect_ok + r.expect_broken
    if not total:
        return "-"
    return f"{r.expect_ok}/{total} ok" if not r.expect_broken else f"{r.expect_broken} broken of {total}"


def status_text(camp: Any) -> tuple[str, str]:
    """(css class, words) for a campaign's state: in progress, or what its exit code means."""
    if not camp.finished and not camp.interrupted:
        return "unknown", "in progress"
    code = camp.exit_code()
    words = {0: "all expectations hold", 1: f"{len(camp.broken())} expectation(s) broken",
             3: "some cells did not run", 130: "interrupted"}.get(code, f"exit {code}")
    return {0: "valid", 1: "invalid"}.get(code, "unknown"), words
