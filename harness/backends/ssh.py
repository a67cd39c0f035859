"""The SSH backend: nodes on machines the harness reaches with SSH (Jepsen's classic set-up).

Options (``[ssh]`` in a spec): ``hosts`` (one per node, in node order),
``user`` (default: root), ``port`` (22), ``key`` (private key file; else the
agent / default keys), ``known_hosts`` (default ``~/.ssh/known_hosts``),
``trust_on_first_use`` (false: an unknown host key is refused),
``node_port`` (7000), ``connect_timeout`` (10 s).

Setup checks each host (x86_64, python3, libfaketime, root or passwordless
sudo, iptables), uploads the node bundle (node code + its dependencies
unpacked from wheels built for the host's Python; cached on the host by
hash), creates the run's firewall chain, and starts each node as a daemon
(``setsid``, pid file, under libfaketime) as the login user. Faults run with
``sudo -n`` when the user is not root. Every command is an argv joined with
:func:`shlex.join`, so no host name, path or value can inject shell.
Teardown stops the nodes, removes the chain and the run's files; the code
cache stays.
"""
from __future__ import annotations

import os
import secrets
import shlex
import socket
import time
from pathlib import Path
from typing import Any, Mapping, Sequence

from harness import optional
from harness.backends import cluster_state, remote
from harness.backends.base import ClusterConfig, CommandResult, Node
from harness.backends.node_code import CACHE_DIR, build_bundle
from harness.errors import UserError
from targets.adapter import Target

PROBE_SCRIPT = ('printf "arch=%s\\n" "$(uname -m)"; printf "home=%s\\n" "$HOME"; printf "uid=%s\\n" "$(id -u)"; '
                'printf "python=%s\\n" "$(python3 -c \'import sys; print(\"%d.%d\" % sys.version_info[:2])\' 2>/dev/null)"; '
                f'[ -e {remote.FAKETIME_LIB} ] && echo faketime=1; '
                'sudo -n true 2>/dev/null && echo sudo=1; PATH="$PATH:/usr/sbin:/sbin" command -v iptables >/dev/null 2>&1 && echo iptables=1; '
                'command -v setsid >/dev/null 2>&1 && echo setsid=1; true')


class SshShell:
    """:class:`remote.NodeShell` over one paramiko connection (sudo -n for privileged commands)."""

    def __init__(self, client, host: str, user: str) -> None:
        self.client, self.host, self.user = client, host, user
        self._sftp = None

    def exec(self, argv: Sequence[str], timeout: float = 10.0, privileged: bool = False) -> CommandResult:
        full = ["timeout", "-s", "KILL", f"{timeout:g}", *argv]
        if privileged and self.user != "root":
            full = ["sudo", "-n", "--", *full]
        try:
            _, stdout, stderr = self.client.exec_command(shlex.join(full), timeout=timeout + 5)
            out, err = stdout.read(), stderr.read()
            code = stdout.channel.recv_exit_status()
        except Exception as e:  # socket.timeout, SSHException, EOFError: a dropped link or a dead host
            return CommandResult(tuple(argv), 255, "", f"ssh to {self.host} failed: {e}")
        return CommandResult(tuple(argv), code, out.decode(errors="replace"), err.decode(errors="replace"))

    def sftp(self):
        if self._sftp is None:
            self._sftp = self.client.open_sftp()
        return self._sftp

    def put_file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        tmp = f"{path}.tmp.{secrets.token_hex(4)}"
        with self.sftp().open(tmp, "wb") as fh:
            fh.chmod(mode)                  # before any byte: a secret is never readable by others
            fh.write(data)
        self.sftp().posix_rename(tmp, path)

    def get_file(self, path: str) -> bytes:
        try:
            with self.sftp().open(path, "rb") as f:
                return f.read()
        except OSError:
            return b""

    def close(self) -> None:
        for thing in (self._sftp, self.client):
            try:
                if thing is not None:
                    thing.close()
            except Exception:
                pass


def connect(host: str, *, user: str, port: int = 22, key: str | None = None, known_hosts: str | None = None,
            trust_on_first_use: bool = False, timeout: float = 10.0) -> SshShell:
    """An SSH connection whose host key is verified against known_hosts (or learned, when TOFU is asked)."""
    paramiko = optional.require("paramiko", "the ssh backend")
    known = Path(os.path.expanduser(known_hosts or "~/.ssh/known_hosts"))
    client = paramiko.SSHClient()
    if known.exists():
        client.load_host_keys(str(known))
    if trust_on_first_use:
        known.parent.mkdir(parents=True, exist_ok=True)
        known.touch(exist_ok=True)
        client.load_host_keys(str(known))      # also names the file new keys are saved to
        client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    else:
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
    where = f"{user}@{host}:{port}"
    try:
        client.connect(host, port=port, username=user, key_filename=key, timeout=timeout, banner_timeout=timeout,
                       auth_timeout=timeout, allow_agent=key is None, look_for_keys=key is None)
    except paramiko.BadHostKeyException:
        raise UserError(f"HOST KEY MISMATCH for {host}:{port} (in {known}): refusing to connect; if the host was "
                        "really reinstalled, remove its old line from known_hosts") from None
    except paramiko.AuthenticationException:
        raise UserError(f"SSH authentication failed for {where}: check user and key") from None
    except paramiko.SSHException as e:
        if "not found in known_hosts" in str(e):
            raise UserError(f"host key of {host}:{port} is not in {known}: add it after checking its fingerprint "
                            "(ssh-keyscan), or set trust_on_first_use = true") from None
        raise UserError(f"SSH to {where} failed: {e}") from None
    except (OSError, socket.timeout) as e:
        raise UserError(f"cannot reach {where}: {e}") from None
    if trust_on_first_use:
        client.save_host_keys(str(known))
    return SshShell(client, host, user)


class SshBackend:
    """Backend over SSH hosts, one node per host."""

    name = "ssh"

    OPTIONS: Mapping[str, tuple[type, Any]] = {
        "hosts": (object, ()), "user": (str, "root"), "port": (int, 22), "key": (str, None),
        "known_hosts": (str, None), "trust_on_first_use": (bool, False), "node_port": (int, 7000),
        "connect_timeout": (float, 10.0), "health_timeout": (float, 60.0)}

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        opts = remote.parse_options("ssh", options, self.OPTIONS)
        hosts = opts["hosts"] or []
        if isinstance(hosts, str):
            hosts = [h.strip() for h in hosts.split(",") if h.strip()]
        if not isinstance(hosts, (list, tuple)):
            raise UserError(f"[ssh] hosts: expected a list of host names or addresses, got {hosts!r}")
        self.hosts: list[str] = [str(h) for h in hosts]
        self.user, self.port = opts["user"], opts["port"]
        self.key = os.path.expanduser(opts["key"]) if opts["key"] else None
        self.known_hosts, self.trust_on_first_use = opts["known_hosts"], opts["trust_on_first_use"]
        self.node_port, self.connect_timeout = opts["node_port"], opts["connect_timeout"]
        self.health_timeout = opts["health_timeout"]
        self.capabilities: frozenset[str] = frozenset({"signals", "wipe"})
        self.firewall_chain = ""
        self.target: Target | None = None
        self._shells: dict[str, SshShell] = {}
        self._layouts: dict[str, remote.NodeLayout] = {}
        self._nodes: dict[str, Node] = {}
        self._argv: dict[str, list[str]] = {}
        self._run_root: dict[str, str] = {}
        self._run_dir: Path | None = None
        self._faketime = False
        self._owner: dict[str, Any] | None = None
        self._secret: str | None = None       # the cluster's node secret (targets.adapter.NODE_SECRET_ENV)

    # -- life cycle -------------------------------------------------------------------------
    def setup(self, config: ClusterConfig) -> list[Node]:
        """Check and prepare every host, upload the node code, start the nodes, wait for health."""
        if len(self.hosts) < len(config.nodes):
            raise UserError(f"the ssh backend needs one host per node: {len(config.nodes)} nodes, "
                            f"{len(self.hosts)} host(s) in [ssh] hosts")
        self.target = config.target
        remote.check_target(self.name, self.target)
        self._owner = cluster_state.current_owner("leave_running" if config.extra.get("leave_running") else None)
        self._secret = secrets.token_urlsafe(32)
        self._run_dir = Path(config.run_dir)
        run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{secrets.token_hex(3)}"
        try:
            facts = {}
            for name, host in zip(config.nodes, self.hosts):
                self._shells[name] = connect(host, user=self.user, port=self.port, key=self.key,
                                             known_hosts=self.known_hosts, trust_on_first_use=self.trust_on_first_use,
                                             timeout=self.connect_timeout)
                facts[name] = self._probe(name, host)
            self._faketime = config.faketime and all(f.get("faketime") for f in facts.values())
            root_ok = all(f.get("uid") == "0" or f.get("sudo") for f in facts.values())
            caps = {"signals", "wipe"} | ({"faketime"} if self._faketime else set())
            if root_ok and all(f.get("iptables") for f in facts.values()):
                self.firewall_chain = f"DYNH-{secrets.token_hex(4)}"
                caps.add("iptables")
            self.capabilities = frozenset(caps)
            for name, host in zip(config.nodes, self.hosts):
                site, app = self._upload_code(name, facts[name])
                root = f"{facts[name]['home']}/.dynharness/runs/{run_id}"
                self._run_root[name] = root
                self._layouts[name] = remote.NodeLayout(
                    app_dir=app, pythonpath=f"{site}:{app}", data_dir=f"{root}/data",
                    clock_file=f"{root}/clock", pid_file=f"{root}/node.pid", log_file=f"{root}/node.log")
                self._nodes[name] = Node(name, host, self.node_port, f"{root}/data",
                                         f"{root}/clock" if self._faketime else None, self._secret)
                self._shells[name].exec(remote.sh('mkdir -p "$1" && echo +0 > "$2"', f"{root}/data",
                                                  f"{root}/clock")).check()
                self._save_state()          # from here on a killed harness leaves files attach() can find
                if self.firewall_chain:
                    remote.ensure_chain(self._shells[name], self.firewall_chain)
            peers = {n: node.address for n, node in self._nodes.items()}
            for name, node in self._nodes.items():
                self._argv[name] = remote.node_argv(config, name, node.host, node.port, peers,
                                                    self._layouts[name].data_dir)
                remote.start_daemon(self._shells[name], self._layouts[name], self._argv[name], faketime=self._faketime,
                                    secret=self._secret)
            self._save_state()
            remote.wait_healthy(self.target.admin, list(self._nodes.values()), self.health_timeout, self._log_tails)
            return list(self._nodes.values())
        except BaseException:
            self.teardown()
            raise

    def _probe(self, name: str, host: str) -> dict[str, str]:
        res = self._shells[name].exec(["sh", "-c", PROBE_SCRIPT], timeout=20)
        facts = dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)
        if facts.get("arch") != "x86_64":
            raise UserError(f"{host}: the node bundle is built for x86_64, the host is {facts.get('arch') or '?'}")
        version = tuple(int(x) for x in facts.get("python", "0.0").split(".") if x.isdigit())
        if version < (3, 11):
            raise UserError(f"{host}: the node needs python3 >= 3.11 (found {facts.get('python') or 'none'})")
        if not facts.get("setsid") or not facts.get("home"):
            raise UserError(f"{host}: needs setsid (util-linux) and a home directory for {self.user}")
        return facts

    def _upload_code(self, name: str, facts: Mapping[str, str]) -> tuple[str, str]:
        """Put the node's dependencies and code on the host once each (cached there by hash).

        Unpacked into a private directory and renamed into place, so two harnesses setting up
        on the same host at once never run a half-extracted copy."""
        shell, base = self._shells[name], f"{facts['home']}/.dynharness"
        dirs = []
        for tarball in build_bundle(facts["python"], CACHE_DIR / "bundles"):
            target = f"{base}/{tarball.name.removesuffix('.tar.gz')}"
            dirs.append(target)
            if shell.exec(["test", "-e", f"{target}/.complete"]).returncode == 0:
                continue
            work = f"{target}.tmp.{secrets.token_hex(4)}"
            shell.exec(["mkdir", "-p", work]).check()
            shell.put_file(f"{work}.tar.gz", tarball.read_bytes())
            script = ('tar -xzf "$1" -C "$3" && rm -f "$1" && touch "$3/.complete" && '
                      '{ [ -e "$2/.complete" ] || rm -rf "$2"; mv -T "$3" "$2" 2>/dev/null || rm -rf "$3"; }')
            shell.exec(remote.sh(script, f"{work}.tar.gz", target, work), timeout=120).check()
        return dirs[0], dirs[1]

    def teardown(self) -> None:
        """Stop the nodes, remove the run's chain and files on every host; idempotent."""
        for name, shell in list(self._shells.items()):
            layout = self._layouts.get(name)
            if layout:
                remote.signal_daemon(shell, layout, "CONT")
                if remote.signal_daemon(shell, layout, "KILL"):
                    try:
                        remote.wait_gone(shell, layout, timeout=5)
                    except RuntimeError:
                        pass
            if self.firewall_chain:
                remote.remove_chain(shell, self.firewall_chain)
            if name in self._run_root:
                shell.exec(["rm", "-rf", "--", self._run_root[name]])
            shell.close()
        self._shells.clear()
        self._save_state(stopped=True)

    def _save_state(self, stopped: bool = False) -> None:
        if self._run_dir is None:
            return
        remote.save_cluster_state(self._run_dir, {
            "backend": "ssh", "stopped": stopped, "run_dir": str(self._run_dir), "owner": self._owner,
            "options": {"hosts": self.hosts, "user": self.user, "port": self.port, "key": self.key,
                        "known_hosts": self.known_hosts, "node_port": self.node_port},
            "firewall_chain": self.firewall_chain, "capabilities": sorted(self.capabilities),
            "argv": self._argv, "run_root": self._run_root, "secret": self._secret, "target": self.target.name if self.target else None,
            "layouts": {n: vars(lay) for n, lay in self._layouts.items()}}, list(self._nodes.values()))

    @classmethod
    def from_state(cls, state: Mapping[str, Any], target: Target) -> "SshBackend":
        """Re-attach to the hosts of a run from its ``cluster.json`` (host keys are verified again)."""
        b = cls(state["options"])
        b._run_dir = Path(state["run_dir"])
        b._owner = state.get("owner")
        b._secret = state.get("secret")
        b.firewall_chain = state.get("firewall_chain") or ""
        b.capabilities = frozenset(state.get("capabilities", b.capabilities))
        b._faketime = "faketime" in b.capabilities
        b._argv, b._run_root = dict(state.get("argv", {})), dict(state.get("run_root", {}))
        b.target = target
        b._layouts = {n: remote.NodeLayout(**l) for n, l in state.get("layouts", {}).items()}
        for n, host in zip((n["name"] for n in state["nodes"]), b.hosts):
            b._shells[n] = connect(host, user=b.user, port=b.port, key=b.key, known_hosts=b.known_hosts,
                                   timeout=b.connect_timeout)
        for n in state["nodes"]:
            b._nodes[n["name"]] = Node(n["name"], n["host"], int(n["port"]), n["data_dir"], n.get("clock_file"),
                                       b._secret)
        return b

    def _log_tails(self) -> dict[str, str]:
        return {n: s.get_file(self._layouts[n].log_file).decode(errors="replace")[-2000:]
                for n, s in self._shells.items() if n in self._layouts}

    # -- node primitives --------------------------------------------------------------------
    def nodes(self) -> list[Node]:
        return list(self._nodes.values())

    def _node(self, node: str) -> tuple[SshShell, remote.NodeLayout]:
        try:
            return self._shells[node], self._layouts[node]
        except KeyError:
            raise UserError(f"no node {node!r} in this cluster (nodes: {', '.join(self._layouts)})") from None

    def start(self, node: str) -> None:
        shell, layout = self._node(node)
        if remote.daemon_pid(shell, layout) is None:
            remote.start_daemon(shell, layout, self._argv[node], faketime=self._faketime, secret=self._secret)
        remote.wait_healthy(self.target.admin, [self._nodes[node]], self.health_timeout, self._log_tails)

    def kill(self, node: str) -> None:
        shell, layout = self._node(node)
        if remote.signal_daemon(shell, layout, "KILL"):
            remote.wait_gone(shell, layout)

    def pause(self, node: str) -> None:
        remote.signal_daemon(*self._node(node), "STOP")

    def resume(self, node: str) -> None:
        remote.signal_daemon(*self._node(node), "CONT")

    def wipe(self, node: str) -> None:
        remote.wipe(*self._node(node))

    def is_running(self, node: str) -> bool:
        return remote.daemon_pid(*self._node(node)) is not None

    def run(self, node: str, argv: Sequence[str], timeout: float = 10.0) -> CommandResult:
        """Run argv on the node's host as root (sudo -n when logged in as another user)."""
        return self._node(node)[0].exec(list(argv), timeout=timeout, privileged=True)

    def write_file(self, node: str, path: str, data: bytes) -> None:
        remote.write_file(self._node(node)[0], path, data)

    def fetch_logs(self, dest: Path) -> None:
        dest.mkdir(parents=True, exist_ok=True)
        for n, shell in self._shells.items():
            if n in self._layouts:
                (dest / f"{n}.log").write_bytes(shell.get_file(self._layouts[n].log_file))
