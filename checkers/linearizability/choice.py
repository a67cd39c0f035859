"""Which model a history is checked against: by name, by import path, or by what the history holds.

``linearizable_model`` (the ``[checkers]`` option, ``check --model``) is ``auto``, a name of
the ``dynharness.models`` entry-point group (``register``, ``cas-register``, ``kv`` and any
installed package's), or ``package.module:Class`` for a model class on the import path (the
current directory included, as ``python -m`` has it), so a model written against
``docs/linearizability.md`` runs from the CLI without being packaged first.
``linearizable_model_initial`` (``--set model.initial=0``) is passed to the class as
``initial=``.

Every mistake here is the user's input: one line naming the model and what is wrong
(:class:`~harness.errors.UserError`), never a traceback and never a silent fallback.
"""
from __future__ import annotations

import importlib
import inspect
import os
import sys
from typing import Any

from checkers.linearizability.kv import KVModel
from checkers.linearizability.models import CASRegisterModel, RegisterModel
from harness import plugins
from harness.errors import UserError
from harness.history import History
from harness.ops import NEMESIS

#: The options' value for "no initial value given" (None is a value a register can start at).
NO_INITIAL = object()

#: What a model must have (docs/linearizability.md, "The model interface").
REQUIRED = ("name", "fs", "pure_fs", "init", "step", "describe_op", "describe_state")


class ModelError(UserError):
    """A model that raised while the search ran it: the user's code, reported in one line."""


def auto_class(history: History) -> type:
    """The built-in model for the ops a history holds: kv for get/put/append, cas-register when
    there is a cas, else register."""
    fs = {o.f for o in history.ops if o.process != NEMESIS}
    if fs & KVModel.fs:
        return KVModel
    return CASRegisterModel if "cas" in fs else RegisterModel


def load_class(name: str) -> Any:
    """The class (or factory) ``name`` means: an entry point, or ``module:attr`` on the import path."""
    if ":" not in name:
        return plugins.load("models", name, "linearizable_model")
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise UserError(f"linearizable_model {name!r}: expected a model name or package.module:Class")
    added = os.getcwd() not in sys.path
    if added:
        sys.path.append(os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except Exception as e:  # noqa: BLE001 - the user's module: any failure is one line
        raise UserError(f"linearizable_model {name!r} cannot be loaded: {type(e).__name__}: {e}") from None
    finally:
        if added:
            sys.path.remove(os.getcwd())
    return obj


def build(name: Any, history: History, initial: Any = NO_INITIAL) -> Any:
    """The model instance for ``name`` (see the module docstring), checked to be a model."""
    if not isinstance(name, str) or not name:
        raise UserError(f"linearizable_model must be auto, a model name or package.module:Class, got {name!r}")
    cls = auto_class(history) if name == "auto" else load_class(name)
    label = cls.__name__ if name == "auto" else name
    if not callable(cls):
        raise UserError(f"linearizable_model {label!r} names {type(cls).__name__}, not a model class")
    kwargs = {}
    if initial is not NO_INITIAL:
        if not _takes(cls, "initial"):
            raise UserError(f"model {label!r} has no initial value to set (its class takes no `initial`)")
        kwargs["initial"] = initial
    try:
        model = cls(**kwargs)
    except Exception as e:  # noqa: BLE001
        raise UserError(f"model {label!r} cannot be created: {type(e).__name__}: {e}") from None
    missing = [a for a in REQUIRED if not hasattr(model, a)]
    if missing:
        raise UserError(f"model {label!r} is not a linearizability model: it has no {', '.join(missing)} "
                        "(see docs/linearizability.md)")
    return model


def _takes(cls: Any, param: str) -> bool:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return False
    return param in sig.parameters or any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())


def describe_error(model: Any, e: BaseException) -> str:
    """One line for a model that raised: its name, the exception, and where in the user's code."""
    tb = e.__traceback__
    where = ""
    while tb is not None:
        frame = tb.tb_frame
        if not frame.f_code.co_filename.startswith(os.path.dirname(__file__)):
            where = f" at {os.path.basename(frame.f_code.co_filename)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return f"model {getattr(model, 'name', type(model).__name__)!r} raised {type(e).__name__}: {e}{where}"
