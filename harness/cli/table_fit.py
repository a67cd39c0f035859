"""Tables that stay readable in a narrow terminal: columns dropped by priority, the rest wrapped.

rich shrinks a table that is too wide by cutting every cell short ("cart-vcl…", "inv…"), which at
80 or 100 columns left ``ls`` and the campaign table unreadable. :func:`fitted_table` decides
instead: the columns that identify a row (priority 0: a run's name, its verdict) are always shown
whole, the least important columns are left out until the rest fit (the caption says which), and
the columns marked ``wrap`` wrap onto more lines rather than lose characters.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from rich.cells import cell_len
from rich.text import Text

#: A wrapping column is never made narrower than this (or than its widest word up to WORD_CAP).
FLOOR = 8
WORD_CAP = 24


@dataclass(frozen=True)
class FitColumn:
    """One column: its header, how much it matters (0: never dropped; higher numbers go first),
    whether its cells may wrap onto several lines, and its alignment."""

    header: str
    priority: int = 0
    wrap: bool = False
    justify: str = "left"


def _plain(cell: Any) -> str:
    return cell.plain if isinstance(cell, Text) else str(cell)


def _natural(header: str, cells: Sequence[Any]) -> int:
    return max([cell_len(line) for c in (header, *map(_plain, cells)) for line in c.split("\n")] or [1])


def _floor(col: FitColumn, natural: int, cells: Sequence[Any]) -> int:
    if not col.wrap:
        return natural
    words = [cell_len(w) for c in (col.header, *map(_plain, cells)) for w in c.split()]
    return min(natural, max(FLOOR, min(max(words or [1]), WORD_CAP)))


def _border(n: int) -> int:
    """Width a rich table with a box and default padding adds to its columns' content: │ x │ y │."""
    return 3 * n + 1


def fit_widths(columns: Sequence[FitColumn], rows: Sequence[Sequence[Any]], width: int) -> dict[int, int]:
    """Which columns to show at ``width`` and how wide each one's content is: {column index: width}.

    Columns are dropped by priority (the highest number first; among equals the rightmost) until
    the shown ones fit at their narrowest (a wrapping column at its floor, any other whole), then
    those dropped before the last one are taken back, the most important first, where they fit;
    the space left is shared among the wrapping columns up to their natural widths."""
    natural = [_natural(c.header, [r[i] for r in rows]) for i, c in enumerate(columns)]
    floor = [_floor(c, natural[i], [r[i] for r in rows]) for i, c in enumerate(columns)]
    shown = list(range(len(columns)))
    droppable = sorted((i for i, c in enumerate(columns) if c.priority > 0),
                       key=lambda i: (columns[i].priority, i), reverse=True)
    dropped: list[int] = []
    while droppable and sum(floor[i] for i in shown) + _border(len(shown)) > width:
        dropped.append(droppable.pop(0))
        shown.remove(dropped[-1])
    for i in reversed(dropped[:-1]):   # a column dropped before a wider one may fit again without it
        if sum(floor[j] for j in shown) + floor[i] + _border(len(shown) + 1) <= width:
            shown = sorted([*shown, i])
    widths = {i: floor[i] for i in shown}
    spare = width - sum(widths.values()) - _border(len(shown))
    while spare > 0:   # one character at a time to the wrapping column that lacks the most
        short = [i for i in shown if widths[i] < natural[i]]
        if not short:
            break
        widest_need = max(short, key=lambda i: (natural[i] - widths[i], -i))
        widths[widest_need] += 1
        spare -= 1
    return widths


def fitted_table(columns: Sequence[FitColumn], rows: Sequence[Sequence[Any]], width: int, **table_kw: Any) -> Any:
    """A rich Table of ``rows`` that fits ``width`` terminal columns (see :func:`fit_widths`); its
    caption names the columns left out, if any."""
    from rich.table import Table

    widths = fit_widths(columns, rows, width)
    left_out = [c.header for i, c in enumerate(columns) if i not in widths]
    if left_out:
        table_kw.setdefault("caption", f"not shown at this width ({width} columns): {', '.join(left_out)}")
        table_kw.setdefault("caption_justify", "left")
    table = Table(**table_kw)
    for i in widths:
        c = columns[i]
        table.add_column(c.header, justify=c.justify,  # type: ignore[arg-type]
                         no_wrap=not c.wrap, overflow="fold", width=widths[i] if c.wrap else None)
    for r in rows:
        table.add_row(*(r[i] if isinstance(r[i], Text) else Text(str(r[i])) for i in widths))
    return table
