"""``dynharness serve``: browse ``histories/`` (runs, campaigns, their reports) on 127.0.0.1.

The front page (:mod:`harness.reports.histories_page`) lists every campaign and run, filterable by
test name, workload, verdict, fault and date, with links to each report, node log and folder.

Bound to the loopback address only: stored histories can hold whatever the
workload wrote, so they are never offered to the network. A run without a
``report.html`` gets one built on first request.

Loopback alone is not enough, so three more rules. Nothing outside the served folder is
served, read or written: every path is resolved (symlinks too: ``http.server`` follows a
link planted in ``histories/`` to ``/etc/passwd``) and refused (403) if it lands outside,
while ``histories/latest`` and other links inside stay fine. The Host header must name a
loopback address, ``localhost`` or the bound address (else 400): a web page whose DNS name
is re-bound to 127.0.0.1 could otherwise read the histories through the visitor's
browser. Logs and histories are ``text/plain`` (with ``nosniff``), shown in the browser
instead of downloaded, and never run as HTML whatever a node wrote into them.
"""
from __future__ import annotations

import argparse
import html
import ipaddress
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from harness.errors import UserError
from harness.limits import MAX_PORT, number

HOST = "127.0.0.1"
#: Files shown as text in the browser (unknown to mimetypes, so they would be downloads).
TEXT_SUFFIXES = (".log", ".jsonl", ".edn", ".txt")


def inside(root: Path, path: Path) -> bool:
    """Whether ``path``, with every symlink resolved (also of a file not there yet), is under ``root``."""
    return path.resolve().is_relative_to(root.resolve())


def loopback_host(host: str | None, bound: str) -> bool:
    """Whether a Host header names this server as only a local client can: a loopback
    address, ``localhost`` or the bound address (any port)."""
    if not host:
        return False
    name = host.strip().lower()
    if name.startswith("["):          # [::1]:8400
        name, _, rest = name[1:].partition("]")
        if rest and not (rest.startswith(":") and rest[1:].isdigit()):
            return False
    elif name.count(":") == 1:        # 127.0.0.1:8400, localhost:8400
        name, _, port = name.partition(":")
        if not port.isdigit():
            return False
    name = name.rstrip(".")
    if name in ("localhost", bound):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class HistoriesHandler(SimpleHTTPRequestHandler):
    """Static files under the histories root, plus ``/`` as a listing and lazy run reports."""

    root: Path

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        """The listing at /, a run report built on first request, else the static file."""
        if not self._allowed():
            return None
        path = unquote(urlsplit(self.path).path)
        if path in ("/", "/index.html"):
            from harness.reports.histories_page import index_page

            return self._send_html(index_page(self.root, partial(inside, self.root)))
        if path == "/favicon.ico":  # browsers ask; answer "nothing" rather than a 404 in their console
            self.send_response(204)
            self.end_headers()
            return None
        if path.endswith("/report.html"):
            target = Path(self.translate_path(path))
            if not target.exists() and (target.parent / "history.jsonl").is_file():
                try:
                    from harness.reports.html import write_run_report
                    write_run_report(target.parent)
                except UserError as e:
                    return self._send_html(f"<p>cannot build this report: {html.escape(str(e))}</p>", 500)
        return super().do_GET()

    def do_HEAD(self) -> None:  # noqa: N802 (http.server's naming)
        """Headers of a static file, under the same rules as GET."""
        if self._allowed():
            super().do_HEAD()

    def _allowed(self) -> bool:
        """Host names this server, and the path stays inside the root; else answer 400 / 403."""
        if not loopback_host(self.headers.get("Host"), self.server.server_address[0]):
            self.send_error(400, "Host must be a loopback address or localhost")
            return False
        try:
            path = Path(self.translate_path(self.path))
            candidates = [path] + ([path / "index.html", path / "index.htm"] if path.is_dir() else [])
            outside = not all(inside(self.root, c) for c in candidates)
        except (ValueError, OSError):     # a NUL byte (%00), a name too long: no such file can exist
            self.send_error(400, "malformed path")
            return False
        if outside:
            self.send_error(403, "outside the served folder")
            return False
        return True

    def guess_type(self, path: Any) -> str:
        """Logs and histories as text shown in the browser, not a download."""
        if str(path).endswith(TEXT_SUFFIXES):
            return "text/plain; charset=utf-8"
        return super().guess_type(path)

    def end_headers(self) -> None:
        """Every answer says: do not guess a type (a log holding HTML stays text)."""
        self.send_header("X-Content-Type-Options", "nosniff")
        super().end_headers()

    def _send_html(self, text: str, code: int = 200) -> None:
        body = text.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt: str, *args: Any) -> None:
        """Quiet unless --verbose (a report page loads in one request; logs would be noise)."""
        if getattr(self.server, "verbose", False):
            super().log_message(fmt, *args)


def make_server(root: Path, port: int) -> ThreadingHTTPServer:
    """A server for ``root`` on 127.0.0.1:port (port 0 picks a free one)."""
    port = number("--port", port, 0, MAX_PORT, integer=True)
    root = root.resolve()
    handler = type("Handler", (HistoriesHandler,), {"root": root})
    try:
        return ThreadingHTTPServer((HOST, port), partial(handler, directory=str(root)))
    except OSError as e:
        raise UserError(f"cannot listen on {HOST}:{port}: {e.strerror or e}") from None


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve the histories folder until Ctrl-C."""
    from harness.runs import histories_root

    root = histories_root(args.histories)
    if not root.is_dir():
        raise UserError(f"{root}: no histories folder yet (run a test first, or pass --histories DIR)")
    srv = make_server(root, args.port)
    srv.verbose = args.verbose  # type: ignore[attr-defined]
    print(f"serving {root.resolve()} on http://{HOST}:{srv.server_address[1]}/  (Ctrl-C to stop)", flush=True)
    try:
        srv.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        srv.server_close()
    return 0


def register(sub: Any) -> None:
    """Add the ``serve`` subcommand."""
    p = sub.add_parser("serve", help="browse histories/ and reports on localhost",
                       description="Serve the histories folder (run reports, campaign pages) on 127.0.0.1 only.",
                       epilog="example: dynharness serve --port 8400   then open http://127.0.0.1:8400/")
    p.add_argument("--port", type=int, default=8400, help="port on 127.0.0.1 (default 8400; 0 picks a free one)")
    p.add_argument("--histories", metavar="DIR", help="folder to serve (default histories/)")
    p.add_argument("--verbose", action="store_true", help="log each request")
    p.set_defaults(func=cmd_serve)
