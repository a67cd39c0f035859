"""Tables fitted to the terminal: columns dropped by priority, never a cell cut short."""
from __future__ import annotations

import pytest
from rich.console import Console

from harness.cli.table_fit import FitColumn, fit_widths, fitted_table

COLS = [FitColumn("name"), FitColumn("verdict"), FitColumn("ops", 6, justify="right"),
        FitColumn("summary", 5, wrap=True), FitColumn("faults", 2, wrap=True)]
ROWS = [("cart-vclock-partition-long-name", "invalid", "123456", "availability_outside_faults=0.99, lost_writes=3",
         "partition, crash, pause")]


@pytest.mark.parametrize("width", [40, 60, 80, 100, 160])
def test_shown_columns_fit_and_the_identifying_ones_stay_whole(width: int) -> None:
    widths = fit_widths(COLS, ROWS, width)
    assert {0, 1} <= set(widths)
    console = Console(width=width, record=True)
    console.print(fitted_table(COLS, ROWS, width))
    text = console.export_text()
    assert max(len(line) for line in text.splitlines()) <= width
    if width >= 60:   # room for the identifying columns: they are whole, nothing is cut short
        assert "…" not in text and "cart-vclock-partition-long-name" in text and " invalid " in text


def test_a_column_dropped_before_a_wider_one_comes_back_if_it_fits() -> None:
    # ops (priority 6) goes first, summary (5) next; without summary there is room for ops again
    widths = fit_widths(COLS, ROWS, 80)
    assert 2 in widths and 3 not in widths and 4 in widths


def test_wrapping_columns_share_the_space_left_and_the_caption_names_the_left_out() -> None:
    widths = fit_widths(COLS, ROWS, 75)
    assert 4 in widths and widths[4] < len("partition, crash, pause") and widths[4] >= len("partition,")
    console = Console(width=75, record=True)
    console.print(fitted_table(COLS, ROWS, 75))
    assert "not shown at this width (75 columns): summary" in console.export_text()


@pytest.mark.parametrize("width", [80, 100])
def test_the_fault_table_keeps_every_word_whole_at_80_and_100_columns(width: int, capsys, monkeypatch) -> None:
    """``run`` and ``check`` print the faults as they ran; at 80 columns its fault and probe cells
    were folded mid-word ("answerin|g"). Every word of what a fault did, its outcome and its probe
    must appear whole on some line, and no line may pass the width."""
    from harness.cli.check import print_fault_table

    did = "power loss of n1, n2, n3: killed, unsynced writes dropped, restarted"
    probe = "every node answering again; unsynced marker gone and synced marker present in-process"
    rows = [{"t": 11.82, "effective": 11.3, "f": "power-loss", "type": "info", "did": did,
             "mechanism": "SIGKILL + lazy disk (in-process transport)", "probe": {"ok": True, "detail": probe}},
            {"t": 21.8, "f": "power-on", "type": "fail", "did": "power on n1, n2, n3", "mechanism": "lazyfs",
             "probe": {"ok": False, "detail": "n2 not answering after 30 s"}}]
    monkeypatch.setenv("COLUMNS", str(width))
    print_fault_table({"faults": rows})
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert max(len(line) for line in lines) <= width
    words = {w.strip(",;:") for text in (did, probe, "FAILED", "done", "not verified") for w in text.split()}
    pieces = {w.strip(",;:│") for line in lines for w in line.split()}
    assert not words - pieces, f"split or lost at {width} columns: {sorted(words - pieces)}\n{out}"
