"""Errors a user can act on.

Anything raised as :class:`UserError` reaches the user as one line
(``dynharness: error: ...``) and a non-zero exit, never as a traceback: bad
specs, flags, histories, unreachable nodes, a missing Docker engine.
"""


from targets.adapter import TargetError


class UserError(Exception):
    """A problem with the user's input or environment, stated in one line."""

    exit_code = 3


class CapabilityError(UserError):
    """A fault or backend feature that cannot be done for real here (e.g. no root, no libfaketime)."""


#: Everything that reaches the user as one line and exit 3: the harness's own errors and a
#: target's (a target imports nothing from the harness, so it raises its own TargetError).
ONE_LINE_ERRORS = (UserError, TargetError)
