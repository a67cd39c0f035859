"""``dynharness import-edn history.edn OUT_DIR``: turn a Jepsen history into ours.

Writes ``OUT_DIR/history.jsonl`` (mapping in ``checkers/jepsen_edn.py`` and
``docs/checkers.md``) and ``OUT_DIR/import.json`` (where it came from, how its
times were read), so ``dynharness check OUT_DIR`` runs the checkers its ops call
for (``harness.imported``). Refuses what cannot be mapped in one line naming the
op and the reason.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.errors import UserError


def cmd_import_edn(args: argparse.Namespace) -> int:
    from checkers.jepsen_edn import import_edn
    from harness.history import write_history
    from harness.imported import write_import

    imp = import_edn(args.edn, independent=args.independent)
    history = imp.history
    out = Path(args.out_dir)
    target = out / "history.jsonl"
    if target.exists() and not args.force:
        raise UserError(f"{target} exists; use --force to overwrite it")
    try:
        out.mkdir(parents=True, exist_ok=True)
        write_history(target, history.ops)
        write_import(out, imp.provenance(str(args.edn)))
    except OSError as e:
        raise UserError(f"{out}: cannot write: {e.strerror or e}") from None
    nemesis = sum(1 for o in history.ops if o.is_nemesis)
    print(f"imported {len(history)} ops ({len(history) - nemesis} client, {nemesis} nemesis) -> {target}")
    for note in imp.notes():
        print(f"note: {note}")
    print(f"check it with: dynharness check {out}")
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser("import-edn", help="import a Jepsen history.edn",
                       description="Convert a Jepsen history.edn into a dynharness history.jsonl.",
                       epilog="example: dynharness import-edn store/latest/history.edn imported/ && dynharness check imported/")
    p.add_argument("edn", metavar="HISTORY_EDN", help="a Jepsen history.edn file")
    p.add_argument("out_dir", metavar="OUT_DIR", help="folder to write history.jsonl into")
    p.add_argument("--independent", action=argparse.BooleanOptionalAction, default=None,
                   help="client values are Jepsen independent [key value] tuples: split them into key and value "
                        "(default: recognised from the ops)")
    p.add_argument("--force", action="store_true", help="overwrite an existing history.jsonl")
    p.set_defaults(func=cmd_import_edn)
