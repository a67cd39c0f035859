"""A linearizability model written against the documented interface (Porcupine's init / step /
describe): a register that starts absent. Registered under ``dynharness.models``."""
from checkers.linearizability.model import UNKNOWN


class LastWriteModel:
    name = "tinykv-register"
    fs = frozenset({"read", "write"})
    pure_fs = frozenset({"read"})

    def init(self):
        return None

    def step(self, state, input, output):
        f, value = input
        if f == "write":
            return True, value
        return output is UNKNOWN or output == state, state

    def describe_op(self, input, output):
        return f"{input[0]} {input[1]}" if input[0] == "write" else f"read -> {output!r}"

    def describe_state(self, state):
        return "absent" if state is None else repr(state)
