"""``dynharness serve``: browse ``histories/`` (runs, campaigns, their reports) on 127.0.0.1.

Bound to the loopback address only: stored histories can hold whatever the
workload wrote, so they are never offered to the network. A run without a
``report.html`` gets one built on first request.
"""
from __future__ import annotations

import argparse
import html
import json
import os
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from harness.errors import UserError

HOST = "127.0.0.1"


def _verdict_of(run: Path) -> str:
    try:
        return str(json.loads((run / "results.json").read_text()).get("verdict", "unknown"))
    except (OSError, ValueError, AttributeError):
        return "incomplete"


def index_page(root: Path, limit: int = 500) -> str:
    """The listing at ``/``: campaigns (newest first) and runs (newest first) with verdicts."""
    from harness.reports.render import render_page

    campaigns = []
    for f in sorted((root / "campaigns").glob("*/*/campaign.json"), key=lambda p: p.parent.name, reverse=True)[:limit]:
        try:
            obj = json.loads(f.read_text())
            cells = obj.get("cells", {})
            broken = sum(1 for c in cells.values() for e in c.get("expectations", []) if not e.get("ok"))
            done = sum(1 for c in cells.values() if c.get("state") == "done")
        except (OSError, ValueError, AttributeError):
            cells, broken, done = {}, 0, 0
        campaigns.append({"href": os.path.relpath(f.parent / "index.html", root), "name": f.parent.parent.name,
                          "ts": f.parent.name, "cells": len(cells), "done": done, "broken": broken})
    runs = []
    for test_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.is_symlink() and p.name != "campaigns") if root.is_dir() else []:
        for run in test_dir.iterdir():
            if run.is_dir() and (run / "history.jsonl").is_file():
                runs.append({"href": os.path.relpath(run / "report.html", root), "test": test_dir.name, "ts": run.name,
                             "verdict": _verdict_of(run)})
    runs.sort(key=lambda r: r["ts"], reverse=True)
    return render_page("index.html.j2", root=str(root), campaigns=campaigns, runs=runs[:limit], total=len(runs),
                       title="histories")


class HistoriesHandler(SimpleHTTPRequestHandler):
    """Static files under the histories root, plus ``/`` as a listing and lazy run reports."""

    root: Path

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        """The listing at /, a run report built on first request, else the static file."""
        path = unquote(urlsplit(self.path).path)
        if path in ("/", "/index.html"):
            return self._send_html(index_page(self.root))
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
