"""The example specs in examples/ stay valid as the spec format evolves (the README points users at them)."""
from __future__ import annotations

from pathlib import Path

import pytest

from harness.spec import load_spec

EXAMPLES = sorted((Path(__file__).resolve().parent.parent / "examples").glob("*.toml"))


def test_there_are_examples() -> None:
    assert len(EXAMPLES) >= 5


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_spec_loads(path: Path) -> None:
    spec = load_spec(str(path), {})
    assert spec.name == path.stem
    assert spec.duration > 0 and spec.nodes >= spec.target["n"]
