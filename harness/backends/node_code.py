"""What a node needs besides Python: its code and its dependencies, for an image or a host.

The node runs the ``targets`` package plus the first-party modules it
imports (found by reading the imports, so the image does not change when an
unrelated part of the harness does). Its third-party dependencies are
downloaded on the controller as binary wheels for the node's Python and
unpacked (a wheel is a zip laid out as site-packages): nothing is installed
from the network on the node. The Docker image copies both in
(:mod:`harness.backends.image`); the SSH backend uploads them as two tarballs
(:func:`build_bundle`).
"""
from __future__ import annotations

import ast
import functools
import hashlib
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path
from typing import Iterator, Sequence

from harness.errors import UserError

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CACHE_DIR = Path(os.environ.get("DYNHARNESS_CACHE", Path.home() / ".cache" / "dynharness"))
#: httptools and uvloop: the reference store; mfusepy: the lazy disk daemon (power loss, over the
#: image's fuse3), the same binding the local backend uses (pyproject.toml)
NODE_REQUIREMENTS = ("httptools>=0.6", "uvloop>=0.19", "mfusepy>=3,<4")
FIRST_PARTY = ("targets", "harness", "nemeses", "checkers")
#: What runs on a node besides the store (with what they import): the lazy disk daemon and its
#: control client, for a power loss inside a container
NODE_MODULES = ("harness/backends/lazyfs_daemon.py", "harness/backends/lazyfs_control.py")


def digest(text: str) -> str:
    """sha256 hex of a text (cache keys)."""
    return hashlib.sha256(text.encode()).hexdigest()


def _module_file(root: Path, dotted: str) -> Path | None:
    base = root.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node of the tree except what sits under ``if TYPE_CHECKING:`` (never imported at run time)."""
    out, todo = [], [tree]
    while todo:
        node = todo.pop()
        out.append(node)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            todo.extend(node.orelse)
            continue
        todo.extend(ast.iter_child_nodes(node))
    return out


def _first_party_imports(root: Path, path: Path) -> set[Path]:
    """Files of first-party modules (and their parent packages) that ``path`` imports."""
    try:
        tree = ast.parse(path.read_text(), str(path))
    except (SyntaxError, UnicodeDecodeError):
        return set()
    package = list(path.relative_to(root).parts[:-1])       # the package a relative import starts from
    names: set[str] = set()
    for node in _runtime_nodes(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package[:len(package) - (node.level - 1)] if node.level > 1 else package
                base = ".".join([*anchor, *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{a.name}" for a in node.names)
    found: set[Path] = set()
    for dotted in names:
        parts = dotted.split(".")
        if not parts[0] in FIRST_PARTY:
            continue
        for i in range(1, len(parts) + 1):          # the module and every package above it
            f = _module_file(root, ".".join(parts[:i]))
            if f:
                found.add(f)
    return found


def node_files(root: Path = PROJECT_ROOT) -> list[Path]:
    """Every file of ``targets`` and :data:`NODE_MODULES` plus the first-party modules they import,
    transitively.

    Parsing every module takes a while, so the answer is memoized on the files' sizes and mtimes."""
    stamp = tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for pkg in FIRST_PARTY
                  for p in sorted((root / pkg).rglob("*.py")) if "__pycache__" not in p.parts)
    return list(_node_files(root, stamp))


@functools.lru_cache(maxsize=4)
def _node_files(root: Path, stamp: tuple) -> tuple[Path, ...]:
    todo = [p for p in (root / "targets").rglob("*") if p.is_file() and "__pycache__" not in p.parts
            and p.suffix not in (".pyc", ".pyo")] + [root / m for m in NODE_MODULES]
    seen: set[Path] = set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        if path.suffix == ".py":
            todo.extend(_first_party_imports(root, path) - seen)
    return tuple(sorted(seen))


def node_packages(root: Path = PROJECT_ROOT) -> tuple[str, ...]:
    """Top-level packages the node's code comes from (for messages)."""
    return tuple(sorted({p.relative_to(root).parts[0] for p in node_files(root)}))


def code_files(root: Path = PROJECT_ROOT) -> Iterator[tuple[str, Path]]:
    """(path relative to the project, path) of every file the node needs."""
    for path in node_files(root):
        yield str(path.relative_to(root)), path


def code_hash(root: Path = PROJECT_ROOT) -> str:
    """Hash of the node code that goes into the image (rebuild when it changes)."""
    h = hashlib.sha256()
    for rel, path in code_files(root):
        h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _private(path: Path) -> Path:
    """A temporary sibling of ``path`` no other process uses (concurrent harnesses share the cache)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(3)}")


def download_wheels(requirements: Sequence[str], python_version: str, dest: Path, timeout: float = 300.0) -> list[Path]:
    """Download the node's dependencies as binary wheels for the image's Python (cached on disk).

    Downloaded into a private directory then renamed into place, so concurrent harnesses never
    see (or write into) a half-filled cache."""
    if (dest / ".complete").exists():
        return sorted(dest.glob("*.whl"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    work = _private(dest)
    py = python_version
    argv = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "-d", str(work),
            "--only-binary=:all:", "--python-version", py, "--implementation", "cp",
            "--abi", "cp" + py.replace(".", ""), "--platform", "manylinux_2_28_x86_64",
            "--platform", "manylinux2014_x86_64", "--platform", "manylinux_2_17_x86_64",
            "--platform", "manylinux1_x86_64", "--platform", "any", *requirements]
    try:
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise UserError(f"pip download of the node's wheels took over {timeout:.0f}s: check access to PyPI") from None
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["?"])[-1]
            raise UserError(f"cannot download the node's wheels ({last}); check access to PyPI or a pip index")
        (work / ".complete").write_text("ok\n")
        if not (dest / ".complete").exists():
            shutil.rmtree(dest, ignore_errors=True)     # a half-filled cache left by an older harness
        try:
            work.rename(dest)
        except OSError:
            pass                       # another harness finished first: use its copy
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return sorted(dest.glob("*.whl"))


def unpack_wheels(wheels: list[Path], site: Path) -> None:
    """Install wheels by unpacking them (a wheel is a zip laid out as site-packages): no pip needed."""
    site.mkdir(parents=True, exist_ok=True)
    for whl in wheels:
        with zipfile.ZipFile(whl) as zf:
            zf.extractall(site)


def wheel_dir(requirements: Sequence[str], python_version: str) -> Path:
    """Where the wheels for these requirements and Python are cached on the controller."""
    return CACHE_DIR / "wheels" / digest(json.dumps([sorted(requirements), python_version]))[:16]


def build_bundle(python_version: str, dest_dir: Path, requirements: Sequence[str] = NODE_REQUIREMENTS) -> tuple[Path, Path]:
    """What a node host needs, as two tar.gz files: ``site-<hash>`` (the node's dependencies,
    unpacked from wheels for the host's Python; changes rarely) and ``app-<hash>`` (the node
    code; small, changes often). Both are cached in ``dest_dir`` by their hash."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    wheels_at = wheel_dir(requirements, python_version)
    wheels = download_wheels(requirements, python_version, wheels_at)
    site = dest_dir / f"site-{wheels_at.name}.tar.gz"
    if not site.exists():
        tmp_tar = _private(site)
        with tempfile.TemporaryDirectory(prefix="dynharness-bundle-") as tmp:
            unpack_wheels(wheels, Path(tmp))
            with tarfile.open(tmp_tar, "w:gz", compresslevel=1) as tar:
                tar.add(tmp, ".")
        os.replace(tmp_tar, site)
    app = dest_dir / f"app-{code_hash()[:16]}.tar.gz"
    if not app.exists():
        tmp_tar = _private(app)
        with tarfile.open(tmp_tar, "w:gz", compresslevel=1) as tar:
            for rel, path in code_files():
                tar.add(path, rel)
        os.replace(tmp_tar, app)
    return site, app
