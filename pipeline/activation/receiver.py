"""A local webhook receiver for trying destinations out: `make demo` delivers to one, and the
tests of delivery do. It keeps every request it gets (time, headers, JSON body) and answers
with the statuses it is given, then 200. Listens on 127.0.0.1 only, on a free port."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Delivery:
    at: float  # time.monotonic() on arrival
    headers: dict[str, str]
    body: dict[str, Any]


class Receiver:
    def __init__(self, answers: list[tuple[int, dict[str, str]]] | None = None) -> None:
        """``answers``: (status, headers) for the first requests, in order; 200 after them."""
        self.answers = list(answers or [])
        self.got: list[Delivery] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.got.append(Delivery(time.monotonic(), dict(self.headers), body))
                status, headers = receiver.answers.pop(0) if receiver.answers else (200, {})
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet: bodies carry personal data."""

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def bodies(self) -> list[dict[str, Any]]:
        return [delivery.body for delivery in self.got]

    def events(self) -> list[tuple[str, str]]:
        """(audience, entered/exited/updated) of every delivery, in order."""
        return [(body["audience_id"], body["event"]) for body in self.bodies()]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
