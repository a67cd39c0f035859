"""Optional dependencies: each serves one backend or one feature and comes with its pip extra.

A plain ``pip install dynharness`` runs the local backend with every fault but power loss; the
rest is asked for by name (``pip install 'dynharness[docker]'``; ``[all]`` for everything):

========== ======================== ==========================================================
extra      installs                 needed by
========== ======================== ==========================================================
docker     the Docker SDK           ``--backend docker``, ``image``, ``cluster``
ssh        paramiko                 ``--backend ssh``
dask       Dask distributed         ``campaign --jobs`` / ``--scheduler``
power-loss mfusepy                  the ``power-loss`` nemesis (lazy FUSE disks)
========== ======================== ==========================================================

Reading Jepsen's ``history.edn`` needs nothing extra (``checkers/edn_reader.py`` is the
project's own reader; edn-format is only its test oracle), nor does the HTML report (no browser).

:func:`require` is the one way in: it imports the module or raises a :class:`UserError` naming
what needs it and the extra that installs it, in one line. ``pyproject.toml``'s
``[project.optional-dependencies]`` must list the same extras (tests/test_optional_extras.py).
"""
from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from types import ModuleType

from harness.errors import UserError


@dataclass(frozen=True)
class Extra:
    """One pip extra: its name (``dynharness[name]``), what it installs (said in the hint), the
    top-level modules it provides."""

    name: str
    installs: str
    modules: tuple[str, ...]


EXTRAS: tuple[Extra, ...] = (
    Extra("docker", "the Docker SDK", ("docker",)),
    Extra("ssh", "paramiko", ("paramiko",)),
    Extra("dask", "Dask distributed", ("dask", "distributed")),
    Extra("power-loss", "mfusepy", ("mfusepy",)),
)


def extra_of(module: str) -> Extra:
    """The extra that provides ``module`` (a dotted name is looked up by its top-level package)."""
    top = module.partition(".")[0]
    for extra in EXTRAS:
        if top in extra.modules:
            return extra
    raise KeyError(f"{module!r} is no optional dependency (harness.optional.EXTRAS)")


def hint(module: str, what: str) -> str:
    """``<what> needs <package>: pip install 'dynharness[<extra>]'``."""
    extra = extra_of(module)
    return f"{what} needs {extra.installs}: pip install 'dynharness[{extra.name}]'"


def require(module: str, what: str) -> ModuleType:
    """``module`` imported, or a one-line :class:`UserError` saying ``what`` needs it and how to
    install it. A module that is there but fails to import (a broken install) says why."""
    extra_of(module)  # an unknown name is a programming error, found whether or not it is installed
    try:
        return importlib.import_module(module)
    except ImportError as e:
        name = e.name or ""
        if name and (module == name or module.startswith(name + ".")):
            raise UserError(hint(module, what)) from None
        raise UserError(f"{hint(module, what)} (it is installed but does not import: {e})") from None


def missing(module: str, what: str) -> str | None:
    """The hint :func:`require` would raise when ``module`` is not installed, else None; looks
    without importing it (mfusepy loads libfuse when imported)."""
    extra_of(module)
    try:
        found = importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):   # a parent package missing, or sys.modules[module] is None
        found = False
    return None if found else hint(module, what)
