"""The store benchmark script still runs end to end with both load generators (figures are not
asserted: speed belongs in benchmarks/RESULTS.md, not in tests)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import require

pytestmark = pytest.mark.cluster
BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "store_bench.py"


@pytest.mark.parametrize("client", ["wrk", "python"])
def test_store_bench_prints_figures_for_both_op_types_without_errors(client):
    if client == "wrk":
        require(shutil.which("wrk") is not None, "wrk not installed (apt-get install wrk)")
    out = subprocess.run([sys.executable, str(BENCH), "--seconds", "2", "--concurrency", "6", "--keys", "60",
                          "--fsync", "never", "--client", client], check=False, capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, out.stderr[-2000:]
    head = re.search(r"client=(\w+): (\d+) ops/s \((\d+) ok ops .*errors \{'read': (\d+), 'write': (\d+)", out.stdout)
    assert head, out.stdout
    assert head.group(1) == client and int(head.group(3)) > 0
    assert head.group(4) == head.group(5) == "0", out.stdout
    counts = dict(re.findall(r"(read|write) +n= *(\d+) +p50", out.stdout))
    # read-modify-write cycles: every write follows a read, so the two counts differ by at most one per worker
    assert set(counts) == {"read", "write"} and 0 <= int(counts["read"]) - int(counts["write"]) <= 6, out.stdout
    assert re.search(r"mean siblings per key after the run \d", out.stdout)
    # the disk under the data dirs was sampled while the load ran (every 50 ms: ~40 in 2 s)
    disk = re.search(r"disk under the data dirs .*n=(\d+)\): p50 [\d.]+ ms  p99 [\d.]+ ms  max [\d.]+ ms; \d+ took", out.stdout)
    assert disk and int(disk.group(1)) >= 10, out.stdout
    # 2 s at 6 clients on 60 keys is no measurement of the target; the verdict line must still say so
    assert re.search(r"target \(>= 2,000 ops/s with p99.9 < 50 ms for reads and writes\): (met|not met) \(", out.stdout)


@pytest.mark.parametrize("value", ["0", "16,x", ""])
def test_store_bench_rejects_a_bad_concurrency_in_one_line(value):
    """--concurrency takes positive integers, one or a comma-separated list; anything else is
    a one-line usage error before any cluster starts."""
    out = subprocess.run([sys.executable, str(BENCH), "--concurrency", value],
                         check=False, capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.splitlines()[-1] == (f"store_bench.py: error: --concurrency must be positive integers "
                                           f"separated by commas, got {value!r}")
