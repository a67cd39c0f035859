"""How long the room check takes before a run starts: benchmarks/RESULTS.md ("Nemeses: the room check").

Run: ``python benchmarks/room_bench.py [--rounds 5] [--calls 20]``. ``nemeses.room.check_room`` for
a 5-node spec asking for every registered fault kind at the default 10 s interval, for a 600 s run
(everything fits: the check builds the schedule once) and a 60 s run (refused: the check also
bisects for the longest interval that fits, ~60 needed-duration evaluations). Prints the best of
``--rounds`` rounds, each the mean of ``--calls`` calls.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.errors import UserError  # noqa: E402
from nemeses import fault_kind, room  # noqa: E402
from nemeses.schedule import NemesisSpec  # noqa: E402

NODES = [f"n{i}" for i in range(1, 6)]


def best_ms(spec: NemesisSpec, duration: float, rounds: int, calls: int) -> float:
    best = float("inf")
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            try:
                room.check_room(spec, NODES, 1, duration)
            except UserError:
                pass
        best = min(best, (time.perf_counter() - t) / calls)
    return best * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--calls", type=int, default=20)
    args = ap.parse_args()
    spec = NemesisSpec.from_mapping({"faults": list(fault_kind.names()), "interval": 10})
    print(f"check_room, 5 nodes, faults={','.join(spec.faults)}, interval 10 s")
    for label, duration in (("600 s run (fits)", 600.0), ("60 s run (refused, bisects)", 60.0)):
        print(f"  {label}: {best_ms(spec, duration, args.rounds, args.calls):.2f} ms")


if __name__ == "__main__":
    main()
