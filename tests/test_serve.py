"""``dynharness serve`` stays inside histories/, answers only to loopback Host names, shows logs as text.

Measured: a symlink planted inside histories/ served /etc/passwd; any Host header was answered
(DNS rebinding: a web page re-bound to 127.0.0.1 could read the histories through a browser);
``--port 99999`` was a traceback. Real HTTP on 127.0.0.1, port picked by the system.
"""
from __future__ import annotations

import http.client
import os
import threading
from pathlib import Path
from typing import Iterator

import pytest

from harness.cli import main
from harness.cli.serve import loopback_host, make_server
from harness.reports.synthetic import write_synthetic_run


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[Path, Path, int]]:
    """(histories root, a folder outside it, port) with a server running on 127.0.0.1."""
    root, outside = tmp_path / "histories", tmp_path / "outside"
    root.mkdir()
    outside.mkdir()
    (outside / "secret.txt").write_text("top secret\n")
    srv = make_server(root, 0)
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield root, outside, srv.server_address[1]
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


def get(port: int, path: str, host: str | None = "default", method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    """One request with exactly the Host header given (None: no Host header at all)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        if host is not None:
            conn.putheader("Host", f"127.0.0.1:{port}" if host == "default" else host)
        conn.endheaders()
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def test_symlinks_out_of_the_served_folder_are_refused(served: tuple[Path, Path, int]) -> None:
    root, outside, port = served
    (root / "passwd").symlink_to(outside / "secret.txt")
    (root / "elsewhere").symlink_to(outside, target_is_directory=True)
    (root / "dangling").symlink_to(outside / "not-yet")
    for path in ("/passwd", "/elsewhere/secret.txt", "/elsewhere/", "/dangling"):
        for method in ("GET", "HEAD"):
            status, _, body = get(port, path, method=method)
            assert status == 403 and b"top secret" not in body, (path, method, status)
    status, _, _ = get(port, "/../outside/secret.txt")
    assert status == 404   # URL-level .. never leaves the root (http.server drops it)


def test_a_run_folder_linked_from_outside_is_neither_listed_nor_reported(served: tuple[Path, Path, int]) -> None:
    root, outside, port = served
    write_synthetic_run(outside / "run", ops=20, seed=1)
    (root / "demo").mkdir()
    (root / "demo" / "20260101T000000").symlink_to(outside / "run", target_is_directory=True)
    status, _, body = get(port, "/")
    assert status == 200 and b"20260101T000000" not in body
    status, _, _ = get(port, "/demo/20260101T000000/report.html")
    assert status == 403 and not (outside / "run" / "report.html").exists(), "nothing written outside"


def test_malformed_paths_get_a_400_and_the_server_goes_on(served: tuple[Path, Path, int]) -> None:
    root, _, port = served
    for path in ("/a%00b", "/%00", "/x/" + "y" * 5000 + "/report.html"):
        for method in ("GET", "HEAD"):
            status, _, _ = get(port, path, method=method)
            assert status in (400, 404), (path, method, status)
    assert get(port, "/a%00b")[0] == 400
    assert get(port, "/")[0] == 200


def test_links_inside_the_root_still_work(served: tuple[Path, Path, int]) -> None:
    root, _, port = served
    run = write_synthetic_run(root / "demo" / "20260101T000000", ops=20, seed=1)
    (root / "latest").symlink_to(os.path.relpath(run, root), target_is_directory=True)
    status, headers, body = get(port, "/latest/history.jsonl")
    assert status == 200 and body == (run / "history.jsonl").read_bytes()
    assert headers["content-type"] == "text/plain; charset=utf-8"


def test_node_logs_are_plain_text_shown_inline(served: tuple[Path, Path, int]) -> None:
    root, _, port = served
    nodes = root / "demo" / "20260101T000000" / "nodes"
    nodes.mkdir(parents=True)
    (nodes / "n1.log").write_text("<script>alert(1)</script> node n1 started\n")
    status, headers, body = get(port, "/demo/20260101T000000/nodes/n1.log")
    assert status == 200 and body.startswith(b"<script>")
    assert headers["content-type"] == "text/plain; charset=utf-8"
    assert headers["x-content-type-options"] == "nosniff"
    assert "attachment" not in headers.get("content-disposition", "")


@pytest.mark.parametrize("host, ok", [
    ("default", True), ("localhost", True), ("LOCALHOST:8400", True), ("127.0.0.1", True), ("127.0.0.2:1", True),
    ("[::1]:8400", True), ("[::1]", True), ("localhost.", True),
    ("evil.example", False), ("evil.example:8400", False), ("127.0.0.1.evil.example", False),
    ("localhost.evil.example", False), ("10.0.0.1", False), ("[::1]x", False), ("localhost:http", False),
    ("", False), (None, False),
])
def test_host_header_must_name_this_loopback_server(served: tuple[Path, Path, int], host: str | None,
                                                    ok: bool) -> None:
    _, _, port = served
    status, _, body = get(port, "/", host)
    assert status == (200 if ok else 400), (host, status)
    if not ok:
        assert b"histories" not in body or b"Host must be" in body


def test_loopback_host_accepts_the_bound_address() -> None:
    assert loopback_host("192.0.2.7:8400", "192.0.2.7") and not loopback_host("192.0.2.8", "192.0.2.7")


def test_serve_port_out_of_range_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for port in ("99999", "-1"):
        assert main(["serve", "--port", port, "--histories", str(tmp_path)]) == 3
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "--port must be at least 0 and at most 65535" in err, err


def test_index_lists_every_run_and_campaign_with_filter_data_and_links(served: tuple[Path, Path, int]) -> None:
    root, _, port = served
    cart = write_synthetic_run(root / "cart-lww-partition" / "20260101T100000", ops=20, seed=1)
    write_synthetic_run(root / "register-vclock-nofaults" / "20260102T100000", ops=20, seed=2, workload="register",
                        mode="vclock", partition=False, lost_share=0.0)
    (cart / "nodes").mkdir(exist_ok=True)
    (cart / "nodes" / "n2.log").write_text("node n2 started\n")
    camp = root / "campaigns" / "small" / "20260103T100000"
    camp.mkdir(parents=True)
    (camp / "campaign.json").write_text('{"cells": {"a": {"state": "done", "expectations": [{"ok": false}]}}}')
    (camp / "index.html").write_text("<p>campaign page</p>")
    status, headers, body = get(port, "/")
    page = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/html")
    for link in ('href="cart-lww-partition/20260101T100000/report.html"',
                 'href="register-vclock-nofaults/20260102T100000/report.html"',
                 'href="cart-lww-partition/20260101T100000/nodes/n2.log"', 'href="campaigns/small/20260103T100000/index.html"'):
        assert link in page, link
    assert 'data-workload="register"' in page and 'data-faults="partition"' in page and 'data-faults="none"' in page
    assert 'data-day="2026-01-01"' in page and 'id="f-verdict"' in page and "<option>register</option>" in page
    for href in ("/cart-lww-partition/20260101T100000/nodes/n2.log", "/campaigns/small/20260103T100000/index.html",
                 "/cart-lww-partition/20260101T100000/report.html", "/cart-lww-partition/20260101T100000/"):
        status, headers, _ = get(port, href)
        assert status == 200, href
    assert get(port, "/cart-lww-partition/20260101T100000/nodes/n2.log")[1]["content-type"] == "text/plain; charset=utf-8"
