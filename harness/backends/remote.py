"""Running and faulting a node on a machine the harness reaches only through a shell.

The Docker backend (``docker exec`` into a container) and the SSH backend
(paramiko to a host) manage nodes the same way: the node is a daemon started
with ``setsid`` under libfaketime, its pid in a pid file, its output appended
to a log file; crash is ``kill -KILL``, pause ``kill -STOP``, wipe ``rm -rf``
of its data directory, and partitions are rules in a firewall chain of the
node's own, hooked from INPUT and OUTPUT. Only the transport differs, so it
sits behind :class:`NodeShell` and everything else lives here once.

Every command is an argv list; where a shell is needed the values are passed
as positional parameters (``sh -c '... "$1" ...' sh VALUE``) or quoted with
:func:`shlex.quote`, so no value can inject shell.
"""
from __future__ import annotations

import base64
import posixpath
import shlex
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Protocol, Sequence

from harness.backends import cluster_state
from harness.backends.base import ClusterConfig, CommandResult, Node
from harness.errors import UserError
from targets.adapter import NODE_SECRET_ENV, NodeAdmin, Target

FAKETIME_LIB = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
#: Files up to this size are written with one exec (atomic rename); larger ones by the transport.
INLINE_WRITE_LIMIT = 64 * 1024


class NodeShell(Protocol):
    """A way to run commands on one node's machine (container or host)."""

    def exec(self, argv: Sequence[str], timeout: float = 10.0, privileged: bool = False) -> CommandResult:
        """Run argv; ``privileged`` asks for root (sudo on SSH when not logged in as root)."""

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        """Copy a file onto the machine by the transport's own means (tar/SFTP), never through a
        command line (large files, and secrets: ``mode`` is set before any byte is written)."""

    def get_file(self, path: str) -> bytes:
        """Read a file from the machine (b'' when absent)."""

    def close(self) -> None: ...


@dataclass(frozen=True)
class NodeLayout:
    """Where one node's things live on its machine, and how to run its Python."""

    app_dir: str            # cwd of the node (contains the ``targets`` package)
    pythonpath: str         # ':'-joined, code + unpacked wheels
    data_dir: str
    clock_file: str
    pid_file: str
    log_file: str
    python: str = "python3"


def parse_options(section: str, given: Mapping[str, Any] | None,
                  known: Mapping[str, tuple[type, Any]]) -> dict[str, Any]:
    """A backend's option table (``[docker]``/``[ssh]``) checked against {name: (type, default)}:
    an unknown name (a typo) or a value of the wrong type is a one-line UserError, not ignored."""
    opts = dict(given or {})
    unknown = sorted(set(opts) - set(known))
    if unknown:
        raise UserError(f"[{section}]: unknown option(s) {', '.join(unknown)} (known: {', '.join(known)})")
    out: dict[str, Any] = {}
    for key, (kind, default) in known.items():
        value = opts.get(key, default)
        if value is None or kind is object:
            out[key] = value
            continue
        try:
            if kind is bool and not isinstance(value, bool):
                raise TypeError
            out[key] = kind(value)
        except (TypeError, ValueError):
            raise UserError(f"[{section}] {key}: expected {kind.__name__}, got {value!r}") from None
    return out


def check_target(backend: str, target: Target) -> None:
    """Refuse, in one line, a target whose store comes from Debian packages: the harness ships
    Python code to a host, not system packages, and does not check the host has them (the Docker
    backend builds them into its image)."""
    if target.system_packages:
        raise UserError(f"the {backend} backend cannot run the {target.name} target yet: it does not install "
                        f"or check {', '.join(target.system_packages)} on the hosts (use --backend local or docker)")


def node_argv(config: ClusterConfig, node: str, host: str, port: int, peers: Mapping[str, str],
              data_dir: str) -> list[str]:
    """The target's argv for one node (a TargetError reaches the user as one line)."""
    return list(config.target.node_command(node, host, port, data_dir, peers, dict(config.settings), python="python3"))


def sh(script: str, *args: str) -> list[str]:
    """argv running a fixed shell script with values as "$1", "$2"...: values are never parsed as shell."""
    return ["sh", "-c", script, "sh", *args]


def write_file(shell: NodeShell, path: str, data: bytes, privileged: bool = False) -> None:
    """Replace ``path`` atomically (write a temp file, rename): a reader never sees it half written."""
    if len(data) > INLINE_WRITE_LIMIT:
        shell.put_file(path, data)
        return
    script = 'tmp="$2.tmp.$$" && printf %s "$1" | base64 -d > "$tmp" && mv -f "$tmp" "$2"'
    shell.exec(sh(script, base64.b64encode(data).decode(), path), privileged=privileged).check()


def secret_file(layout: NodeLayout) -> str:
    """Where the node's copy of the cluster secret lives on its machine (beside its pid file)."""
    return posixpath.join(posixpath.dirname(layout.pid_file), "secret")


def start_daemon(shell: NodeShell, layout: NodeLayout, argv: Sequence[str], *, faketime: bool,
                 extra_env: Mapping[str, str] | None = None, secret: str | None = None) -> int:
    """Start the node detached (own session, stdin closed, output appended to its log); return its pid.

    ``secret`` reaches the node in :data:`NODE_SECRET_ENV`, read from a 0600 file the transport
    copied over: it never appears on a command line, where any user of the host could read it."""
    env = {"PYTHONPATH": layout.pythonpath, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1"}
    if faketime:
        env.update(LD_PRELOAD=FAKETIME_LIB, FAKETIME_TIMESTAMP_FILE=layout.clock_file, FAKETIME_NO_CACHE="1")
    env.update(extra_env or {})
    command = " ".join(shlex.quote(a) for a in ["env", *(f"{k}={v}" for k, v in env.items()), *argv])
    export = ""
    if secret:
        shell.put_file(secret_file(layout), secret.encode(), mode=0o600)
        export = f'{NODE_SECRET_ENV}="$(cat {shlex.quote(secret_file(layout))})" && export {NODE_SECRET_ENV} && '
    script = (f"{export}mkdir -p {shlex.quote(layout.data_dir)} && cd {shlex.quote(layout.app_dir)} && "
              f"{{ [ -s {shlex.quote(layout.clock_file)} ] || echo +0 > {shlex.quote(layout.clock_file)}; }} && "
              f"setsid {command} >> {shlex.quote(layout.log_file)} 2>&1 < /dev/null & "
              f"echo $! > {shlex.quote(layout.pid_file)} && echo $!")
    out = shell.exec(["sh", "-c", script], timeout=15).check().stdout.strip()
    try:
        return int(out.splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"node did not start: {out[:200]!r}") from None


def _pid_script(action: str) -> str:
    # $1 pid file, $2 a string only this node's command line contains (its data dir): a stale
    # pid reused by another process is never signalled.
    return ('pid=$(cat "$1" 2>/dev/null) && [ -n "$pid" ] && [ -r "/proc/$pid/cmdline" ] '
            f'&& tr "\\000" " " < "/proc/$pid/cmdline" | grep -qF -- "$2" && {action}')


def daemon_pid(shell: NodeShell, layout: NodeLayout) -> int | None:
    """The node's pid if its process exists (running or stopped), else None."""
    res = shell.exec(sh(_pid_script('echo "$pid"'), layout.pid_file, layout.data_dir))
    out = res.stdout.strip()
    return int(out) if res.returncode == 0 and out.isdigit() else None


def signal_daemon(shell: NodeShell, layout: NodeLayout, signal: str) -> bool:
    """Send ``signal`` (KILL, STOP, CONT, TERM) to the node's process; False when it is not running."""
    res = shell.exec(sh(_pid_script(f'kill -{signal} "$pid"'), layout.pid_file, layout.data_dir))
    return res.returncode == 0


def wait_gone(shell: NodeShell, layout: NodeLayout, timeout: float = 10.0) -> None:
    """Wait until the node's process has exited (after SIGKILL) so a restart cannot race it."""
    deadline = time.monotonic() + timeout
    while daemon_pid(shell, layout) is not None:
        if time.monotonic() > deadline:
            raise RuntimeError(f"node process still exists {timeout:.0f}s after SIGKILL")
        time.sleep(0.05)


def wipe(shell: NodeShell, layout: NodeLayout) -> None:
    """Delete everything in the node's data directory (refused while the node runs: it would keep
    open files). The directory itself stays: it may be a mount point (a lazy disk), which ``rm``
    cannot remove ("Device or resource busy")."""
    if daemon_pid(shell, layout) is not None:
        raise RuntimeError("wipe refused: the node is running (kill it first)")
    script = 'mkdir -p -- "$1" && find "$1" -mindepth 1 -maxdepth 1 -exec rm -rf -- {} +'
    shell.exec(sh(script, layout.data_dir), privileged=True).check()


def ensure_chain(shell: NodeShell, chain: str) -> None:
    """Create the run's firewall chain and hook it from INPUT and OUTPUT (idempotent)."""
    script = ('iptables -w 5 -N "$1" 2>/dev/null || true; '
              'iptables -w 5 -C INPUT -j "$1" 2>/dev/null || iptables -w 5 -I INPUT -j "$1" || exit 1; '
              'iptables -w 5 -C OUTPUT -j "$1" 2>/dev/null || iptables -w 5 -I OUTPUT -j "$1"')
    shell.exec(sh(script, chain), privileged=True).check()


def flush_chain(shell: NodeShell, chain: str) -> None:
    """Remove every rule the run added (the chain and its hooks stay)."""
    shell.exec(["iptables", "-w", "5", "-F", chain], privileged=True)


def remove_chain(shell: NodeShell, chain: str) -> None:
    """Unhook and delete the run's chain (what teardown does on a machine the harness does not own)."""
    script = ('while iptables -w 5 -D INPUT -j "$1" 2>/dev/null; do :; done; '
              'while iptables -w 5 -D OUTPUT -j "$1" 2>/dev/null; do :; done; '
              'iptables -w 5 -F "$1" 2>/dev/null; iptables -w 5 -X "$1" 2>/dev/null; true')
    shell.exec(sh(script, chain), privileged=True)


def save_cluster_state(run_dir: Path, state: dict[str, Any], nodes: Sequence[Node]) -> None:
    """Write ``<run_dir>/cluster.json`` (0600, atomically): what :func:`harness.backends.attach` reads back."""
    cluster_state.save(run_dir, {**state, "nodes": [{"name": n.name, "host": n.host, "port": n.port,
                                                     "data_dir": n.data_dir, "clock_file": n.clock_file}
                                                    for n in nodes]})


def port_open(host: str, port: int, timeout: float = 1.0) -> bool:
    """Whether a TCP connection to host:port is accepted."""
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def wait_healthy(admin: NodeAdmin, nodes: Sequence[Node], timeout: float,
                 logs: Callable[[], Mapping[str, str]] | None = None) -> None:
    """Wait until every node answers its health check; UserError naming the laggards otherwise
    (with the end of the first laggard's log, read by ``logs()`` when the time is up)."""
    deadline = time.monotonic() + timeout
    pending = list(nodes)
    while pending:
        pending = [n for n in pending if not admin.health(n, timeout=1.0)[0]]
        if not pending:
            return
        if time.monotonic() > deadline:
            names = ", ".join(n.name for n in pending)
            tail = ""
            if logs is not None:
                last = (logs().get(pending[0].name, "").strip().splitlines() or [""])[-1]
                tail = (f"; {pending[0].name}'s log ends: {last[:200]}" if last
                        else f"; {pending[0].name}'s log is empty (still starting, or not reachable from here?)")
            raise UserError(f"node(s) {names} did not answer their health check within {timeout:.0f}s{tail}")
        time.sleep(0.1)
