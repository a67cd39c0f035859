"""Shared test fixtures and the rule that environment-dependent tests never skip silently.

Tests that need root (iptables, netns), a Docker engine, libfaketime or a
browser skip with a reason a user can read (`pytest -rs` shows it). In CI
(`DYNHARNESS_CI=1`, set by `.ci/run`) those skips become failures: CI installs
everything, so a skip there means something is broken.
"""
from __future__ import annotations

import os

import pytest


def require(condition: bool, reason: str) -> None:
    """Skip the calling test with ``reason`` unless ``condition``; in CI, fail instead."""
    if condition:
        return
    if os.environ.get("DYNHARNESS_CI") == "1":
        pytest.fail(f"CI requires this environment: {reason}")
    pytest.skip(reason)
