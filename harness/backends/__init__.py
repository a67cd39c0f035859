"""Cluster backends by name, and re-attaching to a cluster left running.

``make_backend(spec)`` gives the backend a spec names: ``local`` (this
package), ``docker`` and ``ssh`` (imported only when asked for, so a missing
Docker SDK never breaks a local run; when it is asked for, the one-line error names the pip extra). ``attach(path)`` rebuilds the backend
of a cluster from the ``cluster.json`` its setup wrote, for ``dynharness
heal``, for cleaning up after a crashed harness, and for ``leave_running``.
"""
from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping

from harness import optional, plugins
from harness.errors import UserError
from harness.limits import json_loads

if TYPE_CHECKING:
    from harness.backends.base import Backend
    from harness.spec import TestSpec

#: backend name -> (module, class)
BACKENDS: Mapping[str, tuple[str, str]] = {
    "local": ("harness.backends.local", "LocalBackend"),
    "docker": ("harness.backends.docker", "DockerBackend"),
    "ssh": ("harness.backends.ssh", "SshBackend"),
}

#: backend name -> the optional package it cannot start without (``harness.optional``): checked
#: before the backend is imported, so a missing one is said before anything starts
NEEDS: Mapping[str, str] = {"docker": "docker", "ssh": "paramiko"}

#: backend name -> what its setup can provide when a fault asks (``ClusterConfig.extra["features"]``;
#: ``nemeses.fault_kind.FaultKind.backend_needs``), known without importing the backend
FEATURES: Mapping[str, frozenset[str]] = {"local": frozenset({"lazy-disks"}), "docker": frozenset({"lazy-disks"})}


def _backend_class(name: str) -> Any:
    if name not in BACKENDS:
        raise UserError(f"unknown backend {name!r} (known: {', '.join(BACKENDS)})")
    module_name, cls_name = BACKENDS[name]
    if name in NEEDS:
        optional.require(NEEDS[name], f"the {name} backend")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise UserError(f"backend {name!r} is not available: {e}") from None
    try:
        return getattr(module, cls_name)
    except AttributeError:
        raise UserError(f"backend {name!r}: {module_name} has no {cls_name}") from None


def make_backend(spec: "TestSpec") -> "Backend":
    """The backend the spec names, given that backend's options table (``[docker]`` / ``[ssh]``)."""
    cls = _backend_class(spec.backend)
    options = dict(getattr(spec, spec.backend, {}) or {}) if spec.backend in ("docker", "ssh") else {}
    return cls(options)


def attach(cluster_state_path: str | Path) -> "Backend":
    """The backend of a cluster from its state file (a run dir or its ``cluster.json``)."""
    p = Path(cluster_state_path)
    if p.is_dir():
        p = p / "cluster.json"
    try:
        state = json_loads(p.read_text())
    except OSError as e:
        raise UserError(f"{p}: cannot read cluster state: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise UserError(f"{p}: cluster state is not valid JSON: {e.msg} at line {e.lineno}") from None
    if not isinstance(state, dict) or "backend" not in state:
        raise UserError(f"{p}: not a cluster state file (no 'backend' field)")
    cls = _backend_class(str(state["backend"]))
    from_state = getattr(cls, "from_state", None)
    if from_state is None:
        raise UserError(f"backend {state['backend']!r} cannot re-attach to a running cluster")
    return from_state(state, plugins.target(str(state.get("target") or plugins.DEFAULT_TARGET)))
