"""``python -m tinykv.node HOST PORT``: one node; keys live in memory, nothing is replicated."""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DATA: dict = {}
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    def _answer(self, status: int, body: object) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_GET(self) -> None:
        if self.path == "/health":
            return self._answer(200, {"ok": True})
        key = self.path.removeprefix("/kv/")
        with LOCK:
            found, value = key in DATA, DATA.get(key)
        self._answer(200 if found else 404, {"value": value})

    def do_PUT(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        with LOCK:
            DATA[self.path.removeprefix("/kv/")] = body["value"]
        self._answer(200, {})

    def log_message(self, *args) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Handler).serve_forever()
