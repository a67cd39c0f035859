"""Shared test fixtures and the rule that environment-dependent tests never skip silently.

Tests that need root (iptables, netns), a Docker engine, libfaketime or a
browser skip with a reason a user can read (`pytest -rs` shows it). In CI
(`DYNHARNESS_CI=1`, set by `.ci/run`) those skips become failures: CI installs
everything, so a skip there means something is broken.
"""
from __future__ import annotations

import os
import signal

import pytest


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"pytest stopped by signal {signum}")


# A test session stopped with SIGTERM (a CI timeout, `kill`) used to die at once, and clusters that
# tests run inside this process kept their iptables chains (found on this host after a pkill of a
# test run). As a KeyboardInterrupt, pytest stops and runs the fixtures' teardowns first.
signal.signal(signal.SIGTERM, _terminated)


def require(condition: bool, reason: str) -> None:
    """Skip the calling test with ``reason`` unless ``condition``; in CI, fail instead."""
    if condition:
        return
    if os.environ.get("DYNHARNESS_CI") == "1":
        pytest.fail(f"CI requires this environment: {reason}")
    pytest.skip(reason)
