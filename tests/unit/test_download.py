"""Downloads against a real HTTP server on 127.0.0.1 that serves byte ranges and can drop a
connection half-way: progress, resume, checksum, cache, errors."""

import hashlib
import http.server
import os
import re
import socket

import pytest

from clusterlab import download
from clusterlab.errors import UserError

import localnet

CONTENT = os.urandom(3 << 20) + b"end"
DIGEST = hashlib.sha256(CONTENT).hexdigest()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if self.path == "/SHA256SUMS":
            body = f"{'0' * 64}  other.img.xz\n{DIGEST}  base.img.xz\n".encode()
            return self._send(200, body, len(body))
        if self.path != "/base.img.xz":
            return self._send(404, b"no", 2)
        start = 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
        body = CONTENT[start:]
        self.send_response(206 if match else 200)
        if match:
            self.send_header("Content-Range", f"bytes {start}-{len(CONTENT) - 1}/{len(CONTENT)}")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if server.drops:
            server.drops -= 1
            self.wfile.write(body[:len(body) // 2])
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)  # the connection drops half-way
            self.close_connection = True
            return
        self.wfile.write(body)

    def _send(self, status, body, length):
        self.send_response(status)
        self.send_header("Content-Length", str(length))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    with localnet.http_server(Handler) as httpd:
        httpd.drops = 0
        yield httpd


def test_a_download_is_verified_and_kept_under_its_checksum(server, tmp_path):
    path = download.fetch(f"{server.url}/base.img.xz", DIGEST, tmp_path)
    assert path.read_bytes() == CONTENT
    assert path.name == f"{DIGEST}-base.img.xz"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_a_dropped_connection_is_resumed_where_it_stopped(server, tmp_path, monkeypatch):
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)
    server.drops = 1
    path = download.fetch(f"{server.url}/base.img.xz", DIGEST, tmp_path)
    assert path.read_bytes() == CONTENT
    (first, no_range), (second, resumed) = server.requests
    assert no_range is None
    offset = int(re.fullmatch(r"bytes=(\d+)-", resumed).group(1))
    assert 0 < offset <= len(CONTENT) // 2  # from what had arrived, not from the start


def test_the_second_fetch_is_served_by_the_cache(server, tmp_path):
    download.fetch(f"{server.url}/base.img.xz", DIGEST, tmp_path)
    download.fetch(f"{server.url}/base.img.xz", DIGEST, tmp_path)
    assert len(server.requests) == 1


def test_a_wrong_checksum_deletes_the_file_and_stops(server, tmp_path):
    with pytest.raises(UserError, match="sha256 is not"):
        download.fetch(f"{server.url}/base.img.xz", "1" * 64, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_not_found_and_unreachable_are_clear_errors(server, tmp_path, monkeypatch):
    with pytest.raises(UserError, match="not found"):
        download.fetch(f"{server.url}/missing.img.xz", DIGEST, tmp_path)
    monkeypatch.setattr(download, "ATTEMPTS", 2)
    monkeypatch.setattr(download.time, "sleep", lambda seconds: None)
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match="download failed 2 times"):
        download.fetch(f"http://127.0.0.1:{port}/base.img.xz", DIGEST, tmp_path)


def test_the_published_checksum_is_the_one_listed_for_the_file(server):
    assert download.published_sha256(f"{server.url}/base.img.xz",
                                     f"{server.url}/SHA256SUMS") == DIGEST
    with pytest.raises(UserError, match="lists no sha256 for nothing.img"):
        download.published_sha256(f"{server.url}/nothing.img", f"{server.url}/SHA256SUMS")
