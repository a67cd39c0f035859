"""Linearizability checking: a Wing & Gong / Lowe search with Porcupine's design, in Python.

``LinearizabilityChecker`` is the ``linearizable`` checker for register, cas-register and
kv histories (or any model); ``check_operations`` checks one key's ops against any
:class:`Model` (see ``docs/linearizability.md`` to add one).
"""
from checkers.linearizability.checker import LinearizabilityChecker, check_operations, history_operations
from checkers.linearizability.model import UNKNOWN, Model, Operation
from checkers.linearizability.kv import KVModel
from checkers.linearizability.models import CASRegisterModel, RegisterModel

__all__ = ["LinearizabilityChecker", "check_operations", "history_operations", "Model", "Operation",
           "UNKNOWN", "RegisterModel", "CASRegisterModel", "KVModel"]
