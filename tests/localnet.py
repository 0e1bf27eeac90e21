"""Ports and servers on 127.0.0.1: every network path is tested against a real local server."""

import contextlib
import http.server
import socket
import threading


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nobody listens on (at the moment of asking)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def http_server(handler):
    """A threaded HTTP server on 127.0.0.1 answering with handler; it carries .url and a
    .requests list for the handler to record what it was asked."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.requests = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
