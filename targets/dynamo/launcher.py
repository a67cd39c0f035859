"""Start an N-node local cluster of reference Dynamo nodes on loopback.

``python -m targets.dynamo.launcher --nodes 3 --dir D [--mode dvv ...]`` starts
n1..nN as separate processes on 127.0.0.11, .12, ... (each its own loopback
address, so iptables rules between nodes mean something), each with its own
data dir under D and log ``D/<node>.log``; prints their addresses and stops
them on Ctrl-C.

Python API (tests, benchmarks, and the harness's local backend):
:func:`start_node_process` starts one node process, :func:`wait_healthy` waits
for it, and :func:`local_cluster` is a context manager yielding a
:class:`LocalCluster` (nodes are ``targets.adapter.Node`` records) that can ``kill`` (SIGKILL), ``start`` again, and stop
everything on exit.
"""
from __future__ import annotations

import argparse
import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from targets.adapter import NODE_SECRET_ENV, Node, TargetError
from targets.dynamo.admin import DynamoAdmin
from targets.dynamo.admin import request as admin_request
from targets.dynamo.config import DEFAULTS, SETTINGS, coerce_setting, validate_settings
from targets.dynamo.target import DynamoTarget

REPO_ROOT = Path(__file__).resolve().parents[2]
LIBFAKETIME = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"


def node_host(index: int) -> str:
    """Loopback address of the index-th node (1-based): 127.0.0.11, 127.0.0.12, ..."""
    if not 1 <= index <= 200:
        raise TargetError(f"node index {index} out of range 1..200")
    return f"127.0.0.{10 + index}"


def free_port(host: str) -> int:
    """A TCP port free on ``host`` right now (the OS picks it)."""
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def start_node_process(argv: Sequence[str], log_path: str | os.PathLike, *,
                       env: Mapping[str, str] | None = None,
                       clock_file: str | None = None) -> subprocess.Popen:
    """Start one node process (stdout+stderr appended to ``log_path``), in its own session.

    ``clock_file``: run under libfaketime with this FAKETIME_TIMESTAMP_FILE (created as ``+0``
    if missing), so writing e.g. ``-5m`` into it skews the node's wall clock at once.
    """
    full_env = dict(os.environ if env is None else env)
    full_env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO_ROOT), full_env.get("PYTHONPATH")) if p)
    if clock_file is not None:
        if not os.path.exists(LIBFAKETIME):
            raise TargetError(f"libfaketime not found at {LIBFAKETIME} (apt-get install faketime)")
        if not os.path.exists(clock_file):
            Path(clock_file).write_text("+0\n")
        full_env.update(LD_PRELOAD=LIBFAKETIME, FAKETIME_TIMESTAMP_FILE=str(clock_file), FAKETIME_NO_CACHE="1")
    log = open(log_path, "ab")  # noqa: SIM115 - handed to Popen, closed below
    try:
        return subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env=full_env, cwd=str(REPO_ROOT), start_new_session=True)
    finally:
        log.close()


def wait_healthy(node: Node, timeout: float = 20.0, proc: subprocess.Popen | None = None,
                 log_path: str | None = None) -> None:
    """Poll the node's ``/admin/health`` (with its secret) until it answers ok; TargetError (with
    the log tail) otherwise."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    for _ in range(int(timeout / 0.05) + 1):
        if proc is not None and proc.poll() is not None:
            raise TargetError(f"node at {node.url} exited with {proc.returncode}: {_tail(log_path)}")
        ok, last = DynamoAdmin().health(node, timeout=1.0)
        if ok:
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.05)
    raise TargetError(f"node at {node.url} not healthy after {timeout:.0f}s ({last}): {_tail(log_path)}")


def _tail(log_path: str | None) -> str:
    if not log_path or not os.path.exists(log_path):
        return ""
    lines = Path(log_path).read_text(errors="replace").strip().splitlines()
    return lines[-1][:300] if lines else ""


class LocalCluster:
    """N node processes on loopback; every method is safe to call on any exit path."""

    def __init__(self, nodes: list[Node], directory: Path, settings: Mapping[str, Any],
                 secret: str | None = None) -> None:
        self.nodes = {n.name: n for n in nodes}
        self.secret = secret        # the cluster's secret (None: open nodes, as a hand-started one)
        self.logs = {n.name: str(directory / f"{n.name}.log") for n in nodes}
        self.settings = dict(settings)
        self.procs: dict[str, subprocess.Popen] = {}
        self.target = DynamoTarget()
        self.peers = {n.name: n.address for n in nodes}

    def argv(self, name: str) -> list[str]:
        info = self.nodes[name]
        return list(self.target.node_command(name, info.host, info.port, info.data_dir, self.peers,
                                             self.settings, python=sys.executable))

    def start(self, name: str, wait: bool = True) -> None:
        """Start (or restart) one node with its existing data."""
        if self.is_running(name):
            return
        info = self.nodes[name]
        env = {**os.environ, NODE_SECRET_ENV: self.secret} if self.secret else None
        self.procs[name] = start_node_process(self.argv(name), self.logs[name], env=env, clock_file=info.clock_file)
        if wait:
            wait_healthy(info, proc=self.procs[name], log_path=self.logs[name])
            self.wait_members_up()

    def start_all(self, converge: float = 10.0) -> None:
        """Start every stopped node, wait for health, then (bounded) for gossip to see all running nodes up."""
        for name in self.nodes:
            self.start(name, wait=False)
        for name, info in self.nodes.items():
            wait_healthy(info, proc=self.procs[name], log_path=self.logs[name])
        self.wait_members_up(converge)

    def wait_members_up(self, timeout: float = 10.0) -> bool:
        """Wait until every running node's gossip view marks every running node up (False on timeout)."""
        running = [n for n in self.nodes if self.is_running(n)]
        for _ in range(int(timeout / 0.1) + 1):
            if all(self._sees_up(n, running) for n in running):
                return True
            time.sleep(0.1)
        return False

    def _sees_up(self, name: str, others: list[str]) -> bool:
        try:
            status, answer = admin_request(self.nodes[name], "GET", "/admin/members", timeout=1.0)
        except (OSError, http.client.HTTPException):
            return False
        view = answer.get("members") if status == 200 and isinstance(answer, dict) else None
        return isinstance(view, dict) and all(isinstance(view.get(o), dict) and view[o].get("up") for o in others)

    def kill(self, name: str) -> None:
        """SIGKILL the node and reap it."""
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def stop(self, name: str) -> None:
        """SIGTERM the node (SIGKILL after 5 s)."""
        proc = self.procs.pop(name, None)
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def is_running(self, name: str) -> bool:
        proc = self.procs.get(name)
        return proc is not None and proc.poll() is None

    def stop_all(self) -> None:
        for name in list(self.procs):
            self.stop(name)

    def set_clock(self, name: str, offset: str) -> None:
        """Write a libfaketime offset (``-5m``, ``+30s``, ``+0``) into the node's clock file."""
        info = self.nodes[name]
        if info.clock_file is None:
            raise TargetError(f"{name} was not started under libfaketime")
        Path(info.clock_file).write_text(offset + "\n")


def plan_nodes(n: int, directory: str | os.PathLike, *, port: int | None = None,
               faketime: bool = False, secret: str | None = None) -> list[Node]:
    """Node records for n1..nN under ``directory`` (port None: a free port per node)."""
    if not 1 <= n <= 50:
        raise TargetError(f"--nodes must be between 1 and 50, got {n}")
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    nodes = []
    for i in range(1, n + 1):
        host = node_host(i)
        name = f"n{i}"
        nodes.append(Node(name, host, port or free_port(host), str(root / name),
                          str(root / f"{name}.faketime") if faketime else None, secret))
    return nodes


@contextlib.contextmanager
def local_cluster(nodes: int, directory: str | os.PathLike, *, port: int | None = None, faketime: bool = False,
                  secret: str | None = None, **settings: Any) -> Iterator[LocalCluster]:
    """Start ``nodes`` nodes (settings: see DEFAULT_SETTINGS; n defaults to min(3, nodes)), kill them on exit.
    ``secret``: the cluster's secret (admin, internal and peer endpoints need it); None: open nodes."""
    settings.setdefault("n", min(3, nodes))
    settings.setdefault("r", min(settings["n"], 2))
    settings.setdefault("w", min(settings["n"], 2))
    validate_settings({**DEFAULTS, **{k: coerce_setting(k, v) for k, v in settings.items()}}, nodes)
    cluster = LocalCluster(plan_nodes(nodes, directory, port=port, faketime=faketime, secret=secret),
                           Path(directory), settings, secret)
    try:
        cluster.start_all()
        yield cluster
    finally:
        for name in list(cluster.procs):
            cluster.kill(name)


def main(argv: list[str] | None = None) -> int:
    """The launcher CLI (see the module docstring)."""
    p = argparse.ArgumentParser(prog="python -m targets.dynamo.launcher", description=__doc__.splitlines()[0])
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--dir", required=True, help="directory for data dirs and logs")
    p.add_argument("--port", type=int, default=7000,
                   help="port of every node (each has its own IP); 0 = a free port per node")
    for s in SETTINGS:
        p.add_argument(s.flag, dest=s.key, default=None, help=s.help)
    args = p.parse_args(argv)
    try:
        settings = {s.key: coerce_setting(s.key, getattr(args, s.key)) for s in SETTINGS
                    if getattr(args, s.key) is not None}
        with local_cluster(args.nodes, args.dir, port=args.port or None, **settings) as cluster:
            for info in cluster.nodes.values():
                print(f"{info.name} {info.url} data={info.data_dir} log={cluster.logs[info.name]}", flush=True)
            signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt()))
            try:  # from the "cluster up" line on: whoever reads it may press Ctrl-C at once
                print("cluster up; Ctrl-C stops it", flush=True)
                while all(cluster.is_running(n) for n in cluster.nodes):
                    time.sleep(0.5)
                print("a node exited; stopping the cluster", file=sys.stderr)
                return 1
            except KeyboardInterrupt:
                cluster.stop_all()
                return 0
    except TargetError as exc:
        print(f"launcher: error: {exc}", file=sys.stderr)
        return exc.exit_code


if __name__ == "__main__":
    sys.exit(main())
