"""Campaign cells side by side on a local Dask cluster (``--jobs``): same verdicts as one at a
time, a killed worker costs only its cell, Ctrl-C heals and ``--resume`` finishes; bad
``--jobs``, ``--scheduler`` and ``--shard`` values and a scheduler that does not answer are one
line and exit 3.

Short real cells on purpose (3 nodes, 3-4 s of load): the point is the path — a cell's child
process started by a Dask worker, its run stored in this host's histories, results recorded
as the serial loop records them.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.campaign import SubprocessCellRunner, load_campaign, parse_campaign, run_campaign
from tests.test_campaign_e2e import _leftover_processes, two_register_cells

pytest.importorskip("distributed")

BASE = {"nodes": 3, "duration": 4, "rate": 40, "concurrency": 3, "recovery": 1, "seed": 5,
        "target": {"n": 3, "r": 2, "w": 2, "fsync": "never"}}
# verdicts that do not depend on timing: vclock siblings with a union merge lose no cart add,
# an LWW register at R+W>N without faults is linearizable
CELLS = [{"id": "cart", "workload": "cart", "mode": "vclock", "nemesis": "none", "expect": ["lost_writes == 0"]},
         {"id": "cart-split", "workload": "cart", "mode": "vclock", "nemesis": "split", "expect": ["lost_writes == 0"]},
         {"id": "register", "workload": "register", "mode": "lww", "nemesis": "none",
          "expect": ['linearizable = "unknown-ok"']}]
SPLIT = {"split": {"faults": ["partition"], "partition": "split:n1|n2,n3", "start_at": 1, "interval": 2}}


def _outcome(camp):
    return {cid: (r.state, r.verdict, [(e["expect"], e["ok"]) for e in r.expectations]) for cid, r in camp.cells.items()}


@pytest.mark.cluster
def test_jobs_2_gives_the_serial_verdicts_and_records_the_workers(tmp_path, monkeypatch):
    from harness.campaign.dask_pool import DaskPool

    monkeypatch.delenv("DYNHARNESS_HISTORIES", raising=False)   # runs go where each runner says
    defn = parse_campaign({"name": "par", "time_limit": 120, "base": BASE, "nemeses": SPLIT, "cell": CELLS})
    t0 = time.monotonic()
    serial = run_campaign(defn, histories=tmp_path / "serial", runner=SubprocessCellRunner(tmp_path / "serial"))
    t_serial = time.monotonic() - t0
    t0 = time.monotonic()
    with DaskPool.open(jobs=2, scheduler=None, histories=tmp_path / "par") as pool:
        par = run_campaign(defn, histories=tmp_path / "par", pool=pool,
                           runner=SubprocessCellRunner(tmp_path / "par"))
    t_par = time.monotonic() - t0
    assert _outcome(par) == _outcome(serial), (_outcome(par), _outcome(serial))
    assert all(r.state == "done" for r in par.cells.values()) and par.exit_code() == serial.exit_code() == 0
    assert {r.worker for r in par.cells.values()} <= {f"{os.uname().nodename}/0", f"{os.uname().nodename}/1"}
    for cid, r in par.cells.items():
        assert Path(r.run_dir).parent == tmp_path / "par" / f"par.{cid}" and (Path(r.run_dir) / "report.html").is_file()
    stored = json.loads((par.dir / "campaign.json").read_text())
    assert all(c["worker"] for c in stored["cells"].values())
    assert not _leftover_processes(tmp_path)
    print(f"serial {t_serial:.1f} s, --jobs 2 {t_par:.1f} s")


@pytest.mark.cluster
def test_a_killed_worker_makes_its_cell_an_error_and_the_others_run_within_their_limits(tmp_path, monkeypatch):
    from harness.campaign.dask_pool import DaskPool

    monkeypatch.setenv("DYNHARNESS_HISTORIES", str(tmp_path))
    cells = [{"id": "long", "workload": "cart", "mode": "vclock", "nemesis": "none", "set": {"duration": 60}},
             {"id": "limited", "workload": "cart", "mode": "vclock", "nemesis": "none", "set": {"duration": 60},
              "time_limit": 8},
             *CELLS[::2]]
    defn = parse_campaign({"name": "kill", "time_limit": 120, "base": BASE, "cell": cells})
    killed: list[int] = []

    with DaskPool.open(jobs=2, scheduler=None, histories=tmp_path) as pool:
        def on_update(camp, _running):
            info = pool.started.get("long", {})
            if info.get("pid") and not killed:   # the cell's child runs: kill its worker 3 s later
                killed.append(info["worker_pid"])
                threading.Timer(3.0, os.kill, (info["worker_pid"], signal.SIGKILL)).start()

        camp = run_campaign(defn, histories=tmp_path, pool=pool, on_update=on_update,
                            runner=SubprocessCellRunner(tmp_path))
    long = camp.cells["long"]
    assert killed and long.state == "error", (long.state, long.error)
    assert "died mid-cell" in long.error and "stopped on SIGTERM" in long.error, long.error
    assert long.seconds is None or long.seconds < 60
    assert all(camp.cells[c].state == "done" for c in ("cart", "register")), _outcome(camp)
    limited = camp.cells["limited"]   # the time limit holds on a worker too
    assert limited.state == "timeout" and "time limit of 8 s" in limited.error and not limited.killed
    assert camp.exit_code() == 3
    assert not _leftover_processes(tmp_path)


@pytest.mark.cluster
def test_ctrl_c_heals_running_cells_and_resume_with_jobs_finishes(tmp_path):
    camp_file = two_register_cells(tmp_path, duration=10)
    env = {**os.environ, "DYNHARNESS_HISTORIES": str(tmp_path / "h")}
    cmd = [sys.executable, "-m", "harness", "campaign", str(camp_file), "--no-live", "--jobs", "2"]
    proc = subprocess.Popen(cmd, env=env, start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    deadline, states, files = time.monotonic() + 90, [], []
    try:
        while time.monotonic() < deadline:   # wait until both cells run side by side
            files = list((tmp_path / "h" / "campaigns" / "two").glob("*/campaign.json"))
            if files:
                states = [c["state"] for c in json.loads(files[0].read_text())["cells"].values()]
                if states == ["running", "running"]:
                    break
            time.sleep(0.5)
        assert states == ["running", "running"], states
        time.sleep(2)
        os.killpg(proc.pid, signal.SIGINT)          # Ctrl-C at the terminal: the campaign and its local workers
        out, _ = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, out
    camp_dir = files[0].parent
    cells = json.loads((camp_dir / "campaign.json").read_text())["cells"]
    assert [c["state"] for c in cells.values()] == ["interrupted", "interrupted"], out
    assert all("stopped with SIGTERM" in c["error"] for c in cells.values()), cells
    assert not _leftover_processes(tmp_path)
    res = subprocess.run([sys.executable, "-m", "harness", "campaign", "--resume", str(camp_dir), "--no-live",
                          "--jobs", "2"], env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    cells = json.loads((camp_dir / "campaign.json").read_text())["cells"]
    assert [c["state"] for c in cells.values()] == ["done", "done"]
    assert not _leftover_processes(tmp_path)


@pytest.mark.cluster
def test_cells_sent_to_a_scheduler_come_back_as_run_folders(tmp_path, monkeypatch):
    """--scheduler: the worker runs the cell in a folder of its own and ships it back (the
    scheduler here is a LocalCluster's on 127.0.0.1, reached only by its address)."""
    from distributed import LocalCluster

    from harness.campaign.dask_pool import DaskPool

    monkeypatch.delenv("DYNHARNESS_HISTORIES", raising=False)
    spec = tmp_path / "base.toml"
    spec.write_text("nodes = 3\nduration = 3\nrate = 37\nconcurrency = 3\nrecovery = 1\n[target]\nfsync = \"never\"\n")
    (tmp_path / "c.toml").write_text('name = "far"\nspec = "base.toml"\ntime_limit = 120\n[[cell]]\nid = "cart"\n'
                                     'workload = "cart"\nmode = "vclock"\nnemesis = "none"\nexpect = ["lost_writes == 0"]\n')
    defn = load_campaign(tmp_path / "c.toml")
    here = tmp_path / "here"
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        with DaskPool.open(jobs=None, scheduler=cluster.scheduler_address, histories=here) as pool:
            assert pool.ship and pool.slots() == 1
            camp = run_campaign(defn, histories=here, pool=pool, runner=SubprocessCellRunner(here))
    r = camp.cells["cart"]
    assert r.state == "done" and r.expectations[0]["ok"], (r.state, r.error)
    run = Path(r.run_dir)
    assert run.parent == here / "far.cart" and (run / "history.jsonl").is_file() and (run / "report.html").is_file()
    assert json.loads((run / "spec.json").read_text())["rate"] == 37   # the base spec file went along
    assert not list((here / ".").glob(".incoming-*")) and not _leftover_processes(tmp_path)


@pytest.mark.parametrize("argv, words", [
    (["--jobs", "0"], "--jobs must be at least 1"),
    (["--scheduler", "localhost"], "tcp://HOST:8786"),
    (["--shared-histories"], "--shared-histories is for --scheduler"),
    (["--shard", "3/2"], "i must be between 1 and n"),
    (["--shard", "4/3"], "i must be between 1 and n"),
    (["--shard", "1/2", "--cell", "lww-311"], "--shard picks the cells itself"),
])
def test_bad_parallel_flags_are_one_line_exit_3(tmp_path, capsys, argv, words):
    from harness.cli import main

    f = tmp_path / "six.toml"
    f.write_text('name = "six"\n[matrix]\nmode = ["lww", "vclock"]\nnrw = [[3, 1, 1], [3, 2, 2], [3, 1, 3]]\n')
    assert main(["campaign", str(f), "--histories", str(tmp_path), *argv]) == 3
    err = capsys.readouterr().err
    assert err.startswith("dynharness: error:") and words in err and err.count("\n") == 1


def _listener(reply: bytes | None):
    """A loopback listener that accepts and then says nothing (None) or sends ``reply`` and hangs
    on: a port where something answers that is not a Dask scheduler. (port, stop)."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    server.settimeout(0.2)
    done = threading.Event()

    def serve():
        conns = []
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            conns.append(conn)
            if reply is not None:
                conn.sendall(reply)
        for c in conns:
            c.close()
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return server.getsockname()[1], done.set


@pytest.mark.parametrize("far_end", ["nobody", "silent", "http", "garbage"])
def test_a_scheduler_that_does_not_answer_is_one_line_exit_3(tmp_path, capsys, monkeypatch, far_end):
    """A closed port, a listener that accepts and says nothing, an HTTP server, bytes that read as
    absurd frame sizes: each is one line, exit 3, within the connect timeout (the last three hung
    or gave a traceback when only Client's own connect timeout applied)."""
    import socket

    from harness.campaign import dask_pool
    from harness.cli import main

    monkeypatch.setattr(dask_pool, "CONNECT_TIMEOUT", 2.0)
    stop = lambda: None   # noqa: E731
    if far_end == "nobody":
        with socket.socket() as s:   # a loopback port nobody listens on
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
    else:
        reply = {"silent": None, "http": b"HTTP/1.0 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
                 "garbage": b"\xff" * 64}[far_end]
        port, stop = _listener(reply)
    try:
        f = tmp_path / "one.toml"
        f.write_text('name = "one"\n[matrix]\nmode = ["lww"]\n')
        code = main(["campaign", str(f), "--histories", str(tmp_path), "--scheduler", f"tcp://127.0.0.1:{port}"])
    finally:
        stop()
    err = capsys.readouterr().err
    assert code == 3 and f"the Dask scheduler at tcp://127.0.0.1:{port} does not answer" in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "campaigns").exists()   # nothing was started
