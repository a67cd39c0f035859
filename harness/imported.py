"""Histories from elsewhere (Jepsen, Knossos, Porcupine): checking them as they are, not as our runs.

Why a module of its own: a run of this harness records sibling counts, real times and final
reads, and its workload names its checkers; an imported history has none of that, so the
workload's checkers misjudge it (``siblings`` said unknown, ``perf`` printed a p99.9 of
0.0001 ms, and a valid history exited 2). Here the checkers follow what the history holds:

* read / write / cas or get / put / append ops: ``linearizable`` (the model chosen from the
  ops unless ``--model`` says), plus ``staleness`` for read/write registers whose times are
  real (Jepsen's ``:time``; a history ordered by position has no durations to measure);
* add ops (Jepsen's set workloads): ``lost-writes``.

``--checkers`` still overrides. ``import-edn`` writes ``import.json`` beside the history
(format, source, how times were read, whether tuples were split) so ``check OUT_DIR`` later
knows it is an import; ``check history.edn`` imports in memory and writes nothing.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness.errors import UserError
from harness.history import History
from harness.limits import json_loads
from harness.runs import LoadedRun, check_loaded, load_run, store_checked

PROVENANCE = "import.json"
REGISTER_FS = frozenset({"read", "write", "cas"})
KV_FS = frozenset({"get", "put", "append"})


def checkers_for(history: History, times: str) -> list[str]:
    """The checkers that can judge an imported history (see the module docstring)."""
    fs = {o.f for o in history.client_ops()}
    names = []
    if fs & (REGISTER_FS | KV_FS):
        names.append("linearizable")
        if times == "edn :time" and "read" in fs and "write" in fs and not fs & KV_FS:
            names.append("staleness")
    if "add" in fs:
        names.append("lost-writes")
    return names or ["linearizable"]   # nothing it knows: linearizable says which ops it saw


def with_notes(history: History, notes: Sequence[str]) -> History:
    """The history with the import's notes as warnings (the verdict table prints them)."""
    return dataclasses.replace(history, warnings=tuple(history.warnings) + tuple(notes))


def load(path: str | Path, independent: bool | None = None) -> LoadedRun:
    """A run folder, a ``.jsonl`` history, or a ``.edn`` file imported in memory; an import's
    provenance is in ``spec["imported"]``."""
    from checkers.jepsen_edn import import_edn

    p = Path(path)
    if p.suffix == ".edn" and p.is_file():
        imp = import_edn(p, independent=independent)
        return LoadedRun(None, {"imported": imp.provenance(str(p))}, with_notes(imp.history, imp.notes()))
    run = load_run(p)
    meta_path = run.dir / PROVENANCE if run.dir is not None else None
    if meta_path is None or not meta_path.exists():
        return run
    try:
        meta = json_loads(meta_path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{meta_path}: unreadable import record: {e}") from None
    if not isinstance(meta, dict):
        raise UserError(f"{meta_path}: unreadable import record: not a JSON object")
    notes = [n for n in meta.get("notes") or () if isinstance(n, str)]
    return dataclasses.replace(run, spec={**run.spec, "imported": meta}, history=with_notes(run.history, notes))


def write_import(out_dir: Path, provenance: Mapping[str, Any]) -> None:
    """Record beside an imported history where it came from and how it was read."""
    (out_dir / PROVENANCE).write_text(json.dumps(dict(provenance), indent=2) + "\n")


def check(path: str | Path, names: Sequence[str] | None, options: Mapping[str, Any], *, write: bool = True,
          independent: bool | None = None) -> tuple[LoadedRun, dict[str, Any]]:
    """Check a run, a history or an import with ``options`` over the stored ``[checkers]`` ones.

    A model given in ``options`` is built before anything runs (a mistake is one line), and a
    model that raised while checking is a UserError too: its verdict would mean nothing."""
    from checkers.linearizability import choice

    run = load(path, independent)
    imported = run.spec.get("imported")
    if names is None and imported:
        names = checkers_for(run.history, str(imported.get("times")))
    if options:
        merged = {**(run.spec.get("checkers") or {}), **options}
        run = dataclasses.replace(run, spec={**run.spec, "checkers": merged})
        choice.build(merged.get("linearizable_model") or "auto", run.history,
                     merged.get("linearizable_model_initial", choice.NO_INITIAL))
    results = check_loaded(run, names)
    error = ((results.get("checkers") or {}).get("linearizable") or {}).get("details", {}).get("model_error")
    if error:
        raise UserError(error)
    if write:
        store_checked(run, results)
    return run, results
