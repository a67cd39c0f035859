"""The local backend's iptables chain: one per run, ``DH-<8 hex>``, hooked from INPUT (and from
OUTPUT when nodes run in cgroups of their own, so rules see what a node sends), and removed.

Why a module of its own: the backend makes and removes its chain, and ``dynharness cleanup``
removes the chain of a run whose harness was killed, with no backend left to ask.
"""
from __future__ import annotations

import os
import secrets
import shutil
import subprocess

from harness.backends import node_cgroups
from harness.errors import UserError


def iptables_usable() -> bool:
    """Root, an ``iptables`` binary, and a filter table it can list."""
    if os.geteuid() != 0 or not shutil.which("iptables"):
        return False
    try:
        return subprocess.run(["iptables", "-w", "5", "-L", "INPUT", "-n"], capture_output=True,
                              timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _iptables(*argv: str) -> None:
    r = subprocess.run(["iptables", "-w", "5", *argv], capture_output=True, text=True, timeout=15)
    if r.returncode != 0:
        raise UserError(f"iptables {' '.join(argv)} failed: {r.stderr.strip()}")


def create() -> str:
    """Make a new run chain and jump to it from INPUT; its name."""
    chain = f"DH-{secrets.token_hex(4)}"
    _iptables("-N", chain)
    _iptables("-I", "INPUT", "-j", chain)
    return chain


def hook_output(chain: str) -> None:
    """Jump to the chain from OUTPUT too: cgroup rules match the sending node's packets there."""
    _iptables("-I", "OUTPUT", "-j", chain)


def remove(chain: str) -> None:
    """Flush, unhook (from INPUT and OUTPUT) and delete a run's chain; quiet when parts are gone."""
    for argv in (["-F", chain], ["-D", "INPUT", "-j", chain], ["-D", "OUTPUT", "-j", chain], ["-X", chain]):
        subprocess.run(["iptables", "-w", "5", *argv], capture_output=True, timeout=15)


def node_cgroups_usable() -> bool:
    """Whether a local run on this host would get the ``node-cgroups`` capability (root, iptables,
    a writable cgroup2 hierarchy and iptables' cgroup match, probed for real in a throw-away chain):
    what the local backend's setup would find, asked before any run starts
    (``harness.backends.local_share``)."""
    if not iptables_usable():
        return False
    chain = f"DH-{secrets.token_hex(4)}"
    if subprocess.run(["iptables", "-w", "5", "-N", chain], capture_output=True, timeout=15).returncode != 0:
        return False
    try:
        paths = node_cgroups.create(chain, ["probe"], chain)
        if paths:
            node_cgroups.remove(paths)
        return bool(paths)
    finally:
        subprocess.run(["iptables", "-w", "5", "-X", chain], capture_output=True, timeout=15)
