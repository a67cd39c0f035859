"""Plug points by name: targets, workloads, checkers, nemeses and linearizability models.

Every plug point is an entry-point group (``dynharness.targets``, ``dynharness.workloads``,
``dynharness.checkers``, ``dynharness.nemeses``, ``dynharness.models``). The built-ins are
registered in this project's ``pyproject.toml`` exactly as a user's package registers its own:

    [project.entry-points."dynharness.targets"]
    mystore = "mystore.target:MyStoreTarget"

and ``pip install`` of that package is all it takes: no edit to this project. What an entry
point names is documented per group in ``docs/contracts.md``.

When this project runs from a checkout that was never installed (no distribution metadata), or
from a checkout other than the one an editable install points at (a second git worktree run with
``PYTHONPATH``), the built-in table below stands in for its own entry points, so the built-ins of
the code actually running resolve the same way.
"""
from __future__ import annotations

import importlib
import inspect
import json
from functools import lru_cache
from importlib import metadata
from pathlib import Path
from typing import Any, Mapping

from harness.errors import UserError

#: The store a spec tests when its ``[target]`` table names none (and of cluster state files
#: written before targets were named).
DEFAULT_TARGET = "dynamo"

#: The project's own entry points (the same lines as pyproject.toml), used only when the
#: ``dynharness`` distribution is not installed.
BUILTIN: Mapping[str, Mapping[str, str]] = {
    "targets": {"dynamo": "targets.dynamo.target:DynamoTarget", "etcd": "targets.etcd.target:EtcdTarget"},
    "workloads": {"cart": "harness.workloads.cart:KIND", "register": "harness.workloads.register:KIND",
                  "session": "harness.workloads.session:KIND",
                  "cas-register": "harness.workloads.cas_register:KIND"},
    "checkers": {"lost-writes": "checkers.lost_writes:LostWritesChecker",
                 "resurrections": "checkers.resurrections:ResurrectionsChecker",
                 "siblings": "checkers.siblings:SiblingsChecker", "session": "checkers.session:SessionChecker",
                 "staleness": "checkers.staleness:StalenessChecker", "perf": "checkers.perf:PerfChecker",
                 "linearizable": "checkers.linearizability:LinearizabilityChecker",
                 "convergence": "checkers.convergence:ConvergenceChecker"},
    "nemeses": {"partition": "nemeses.builtin_kinds:PARTITION", "clock": "nemeses.builtin_kinds:CLOCK",
                "crash": "nemeses.builtin_kinds:CRASH", "wipe": "nemeses.builtin_kinds:WIPE", "pause": "nemeses.builtin_kinds:PAUSE",
                "loss": "nemeses.builtin_kinds:LOSS", "latency": "nemeses.builtin_kinds:LATENCY",
                "power-loss": "nemeses.builtin_kinds:POWER_LOSS"},
    "models": {"register": "checkers.linearizability.models:RegisterModel",
               "cas-register": "checkers.linearizability.models:CASRegisterModel",
               "kv": "checkers.linearizability.kv:KVModel"},
}


@lru_cache(maxsize=None)
def _entry_points(group: str) -> dict[str, str]:
    """name -> "module:attr" for one plug point, built-ins first, installed packages after."""
    found = {ep.name: ep.value for ep in metadata.entry_points(group=f"dynharness.{group}")}
    try:
        dist = metadata.distribution("dynharness")
    except metadata.PackageNotFoundError:
        return {**BUILTIN.get(group, {}), **found}
    if not _describes_this_checkout(dist):
        return {**BUILTIN.get(group, {}), **found}
    return found


def _describes_this_checkout(dist: metadata.Distribution) -> bool:
    """Whether the installed metadata is this code's: an editable install records the folder it
    points at, and code imported from another folder (a worktree on ``PYTHONPATH``) is not it."""
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "{}")
    except ValueError:
        return True
    url = str(direct.get("url") or "")
    if not (direct.get("dir_info") or {}).get("editable") or not url.startswith("file://"):
        return True
    return Path(url[len("file://"):]).resolve() == Path(__file__).resolve().parents[1]


def names(group: str) -> tuple[str, ...]:
    """Every name registered for a plug point, sorted."""
    return tuple(sorted(_entry_points(group)))


def registrations(group: str) -> tuple[tuple[str, str], ...]:
    """(name, "module:attr") of every entry point of a plug point, sorted: what a cache of the
    loaded objects is keyed on, so it follows any change to the registrations."""
    return tuple(sorted(_entry_points(group).items()))


def load(group: str, name: str, what: str | None = None) -> Any:
    """The object an entry point names; UserError (one line) for an unknown or broken plugin."""
    what = what or group.rstrip("s")
    table = _entry_points(group)
    if name not in table:
        stale = name in BUILTIN.get(group, {})  # built in, yet not registered: installed before it was added
        raise UserError(f"unknown {what} {name!r} (known: {', '.join(sorted(table)) or 'none'})"
                        + ("; this dynharness install predates it: run `pip install -e .` again" if stale else ""))
    module_name, _, attr = table[name].partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in filter(None, attr.split(".")):
            obj = getattr(obj, part)
    except Exception as e:  # noqa: BLE001  a broken plugin is the user's input: one line, not a traceback
        raise UserError(f"{what} {name!r} ({table[name]}) cannot be loaded: {type(e).__name__}: {e}") from None
    return obj


def target(kind: str) -> Any:
    """A target instance by name (the ``dynharness.targets`` group names a class or factory)."""
    return load("targets", kind, "target")()


def node_client(target: Any, node: Any, *, timeout: float, settings: Mapping[str, Any]) -> Any:
    """``target``'s async client for ``node`` (a ``targets.adapter.Node``), given the cluster's
    secret when the target's ``client`` takes a ``secret`` parameter (the contract's optional
    one: a target written before it, or one whose store has no guarded endpoints, has none)."""
    kwargs: dict[str, Any] = {"timeout": timeout, "settings": settings}
    if node.secret and _takes(target.client, "secret"):
        kwargs["secret"] = node.secret
    return target.client(node.name, node.url, **kwargs)


def _takes(fn: Any, name: str) -> bool:
    """Whether ``fn`` accepts the keyword ``name`` (by name or through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):
        return False
    return any((p.name == name and p.kind != p.POSITIONAL_ONLY) or p.kind == p.VAR_KEYWORD for p in params)
