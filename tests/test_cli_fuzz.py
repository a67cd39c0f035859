"""Fuzzed numeric flags of run / campaign / check / serve / ls: a documented exit code, never a traceback.

The CLI runs in process (``harness.cli.main``), so each example costs milliseconds. Nothing real
starts: ``run`` gets a stand-in ``run_test`` (which checks that whatever reached it is finite and
within the bounds), ``serve`` a stand-in HTTP server, ``campaign`` only ``--dry-run``. Exit codes
are the documented ones (0 valid / nothing wrong, 3 bad input; argparse's own errors are 3 too).
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import harness.cli.serve
import harness.runner
from harness import limits
from harness.cli import main

#: What a user might type where a number goes: floats of every kind (nan, inf, huge, tiny,
#: negative), huge integers, notations Python half-accepts, and any short text.
NUMBER_TEXT = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(min_value=-10**30, max_value=10**30).map(str),
    st.sampled_from(["nan", "NaN", "inf", "-inf", "1e309", "-1e309", "0", "-0", "1_000", "0x10", "", " ", "1e-320",
                     "\u0663", "100000000", "99999", "65536", "-1", "4.5", "20", "1e6"]),
    st.text(max_size=12),
)
RUN_FLAGS = ("--nodes", "--seed", "--duration", "--rate", "--concurrency", "--recovery", "--final-read-timeout",
             "--client-timeout", "--keys", "--n", "--r", "--w", "--pr", "--pw", "--nemesis-interval")
SET_FIELDS = ("nemesis.start_at", "nemesis.crash.restart_delay", "workload.zipf_s", "checkers.time_limit",
              "target.request_timeout", "workload.mix.read", "nemesis.clock.offsets_ms", "nemesis.latency.ms")
DOCUMENTED = {0, 1, 2, 3}
#: Modest by default (the suite runs on shared cores); DYNHARNESS_FUZZ_EXAMPLES=2000 for a deep run.
FUZZ = settings(max_examples=int(os.environ.get("DYNHARNESS_FUZZ_EXAMPLES", "40")), deadline=None,
                suppress_health_check=[HealthCheck.too_slow])


def call(argv: list[str]) -> tuple[int, str, str]:
    """``main(argv)`` in process: (exit code, stdout, stderr); argparse's SystemExit counts as the code."""
    err, out = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = main(argv)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 3
    return code, out.getvalue(), err.getvalue()


def assert_clean(argv: list[str], code: int, out: str, err: str) -> None:
    """A documented code, no traceback, and exit 3 explained: an error line (or, for a campaign dry
    run, the cells listed with their one-line errors)."""
    assert "Traceback" not in err + out, (argv, err)
    assert code in DOCUMENTED, (argv, code, err)
    if code == 3 and not err and "--dry-run" in argv:
        assert out.rstrip("\n").endswith(" invalid") and "    invalid: " in out, (argv, out)
    elif code == 3:
        last = err.strip("\n").split("\n")[-1]
        assert last.startswith("dynharness") and ": error: " in last, (argv, err)


def fake_run_test(spec: Any, **kw: Any) -> SimpleNamespace:
    """Stands in for a real run: whatever gets this far must be finite and within the bounds."""
    for name in ("duration", "rate", "recovery", "final_read_timeout", "client_timeout"):
        v = getattr(spec, name)
        assert math.isfinite(v) and 0 <= v <= limits.MAX_SECONDS or name == "rate", (name, v)
    assert 0 < spec.rate <= limits.MAX_RATE and 1 <= spec.concurrency <= limits.MAX_CONCURRENCY
    assert 1 <= spec.nodes <= limits.MAX_NODES and 1 <= spec.workload.keys <= limits.MAX_KEYS
    return SimpleNamespace(error=None, exit_code=0, results={}, run_dir=Path(kw.get("histories", ".")))


class FakeServer:
    """Stands in for the HTTP server: the port has passed every check; stop at once."""

    def __init__(self, address: tuple[str, int], handler: Any) -> None:
        self.server_address = address

    def serve_forever(self) -> None:
        raise KeyboardInterrupt

    def server_close(self) -> None:
        pass


@pytest.fixture(scope="module")
def histories() -> Any:
    with tempfile.TemporaryDirectory() as d:
        yield d


@FUZZ
@given(flags=st.lists(st.tuples(st.sampled_from(RUN_FLAGS), NUMBER_TEXT), min_size=1, max_size=3),
       sets=st.lists(st.tuples(st.sampled_from(SET_FIELDS), NUMBER_TEXT), max_size=2),
       nemesis=st.sampled_from(["none", "partition", "crash,pause", None]))
def test_run_numbers(histories: str, flags: list[tuple[str, str]], sets: list[tuple[str, str]],
                     nemesis: str | None) -> None:
    argv = ["run", "--no-display", "--histories", histories, *(f"{f}={v}" for f, v in flags)]
    for field, v in sets:
        argv += ["--set", f"{field}={v}"]
    if nemesis:
        argv += ["--nemesis", nemesis]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(harness.runner, "run_test", fake_run_test)
        code, out, err = call(argv)
    assert_clean(argv, code, out, err)
    assert not list(Path(histories).iterdir()), "nothing stored"


@FUZZ
@given(repeats=NUMBER_TEXT, time_limit=NUMBER_TEXT, duration=NUMBER_TEXT, interval=NUMBER_TEXT,
       concurrency=NUMBER_TEXT)
def test_campaign_numbers(histories: str, repeats: str, time_limit: str, duration: str, interval: str,
                          concurrency: str) -> None:
    def toml(text: str) -> str:   # as a TOML number when it is one, else as a string
        try:
            import tomllib
            tomllib.loads(f"v = {text}")
            return text
        except Exception:  # noqa: BLE001 - any parse failure: write it as a string
            return json.dumps(text)

    camp = Path(histories) / "fuzz.toml"
    camp.write_text(f'name = "fuzz"\nrepeats = {toml(repeats)}\ntime_limit = {toml(time_limit)}\n'
                    f'[base]\nduration = {toml(duration)}\nconcurrency = {toml(concurrency)}\n'
                    f'[nemeses.p]\nfaults = ["partition"]\ninterval = {toml(interval)}\n'
                    f'[matrix]\nnemesis = ["none", "p"]\n')
    try:
        argv = ["campaign", str(camp), "--dry-run"]
        code, out, err = call(argv)
        assert_clean(argv, code, out, err)
    finally:
        camp.unlink()


@FUZZ
@given(port=NUMBER_TEXT, last=NUMBER_TEXT, run_dir=st.text(max_size=20), checkers=st.text(max_size=12))
@example(port="99999", last="-1", run_dir="a\nb", checkers="\n")   # a quoted newline stays one line
def test_serve_ls_check_arguments(histories: str, port: str, last: str, run_dir: str, checkers: str) -> None:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(harness.cli.serve, "ThreadingHTTPServer", FakeServer)
        for argv in (["serve", f"--port={port}", "--histories", histories],
                     ["ls", f"--last={last}", "--histories", histories],
                     ["check", "--", run_dir or "x", f"--checkers={checkers}"]):
            code, out, err = call(argv)
            assert_clean(argv, code, out, err)
