"""A local stand-in for the Hugging Face hub: serves files in its URL layout on 127.0.0.1.

Only what huggingface_hub's file download and listing use: HEAD and GET on
/{datasets/}{repo}/resolve/{revision}/{path}, with X-Repo-Commit and ETag headers
(the sha256 for LFS-like files), GET /api/{kind}/{repo}/tree/{revision} (one page),
404s with the hub's X-Error-Code values. `down = True` answers 503 to everything, like a
hub that is failing.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class HubRepo:
    kind: str  # "datasets" or "models"
    repo_id: str
    revisions: dict[str, dict[str, Path]] = field(default_factory=dict)  # commit -> files
    refs: dict[str, str] = field(default_factory=dict)  # branch or tag -> commit

    def add(self, commit: str, files: dict[str, Path], *refs: str) -> None:
        self.revisions[commit] = files
        for ref in refs:
            self.refs[ref] = commit


@dataclass
class FakeHub:
    repos: list[HubRepo]
    url: str = ""
    requests: list[str] = field(default_factory=list)
    authorizations: list[str] = field(default_factory=list)  # Authorization headers seen
    down: bool = False


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:  # keep test output clean
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, *, body: bool) -> None:
            hub.requests.append(f"{self.command} {self.path}")
            hub.authorizations.append(self.headers.get("Authorization", ""))
            if hub.down:
                self._send(503, b"", {})
                return
            if self.path.startswith("/api/"):
                self._tree(body)
                return
            found = self._lookup()
            if isinstance(found, str):
                self.send_response(404)
                self.send_header("X-Error-Code", found)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            commit, path = found
            data = path.read_bytes()
            self.send_response(200)
            self.send_header("X-Repo-Commit", commit)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Content-Type", "application/octet-stream")
            self.end_headers()
            if body:
                self.wfile.write(data)

        def _send(self, status: int, data: bytes, headers: dict[str, str]) -> None:
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _tree(self, body: bool) -> None:
            route = self.path.split("?", 1)[0][len("/api/") :]
            for repo in hub.repos:
                prefix = f"{repo.kind}/{repo.repo_id}/tree/"
                if route.startswith(prefix):
                    commit = repo.refs.get(route[len(prefix) :].split("/")[0], "")
                    files = repo.revisions.get(commit or route[len(prefix) :].split("/")[0])
                    if files is None:
                        self._send(404, b"", {"X-Error-Code": "RevisionNotFound"})
                        return
                    listing = [{"type": "file", "oid": hashlib.sha1(path.read_bytes()).hexdigest(),
                                "size": path.stat().st_size, "path": name}
                               for name, path in sorted(files.items())]  # fmt: skip
                    self._send(
                        200, json.dumps(listing).encode(), {"Content-Type": "application/json"}
                    )
                    return
            self._send(404, b"", {"X-Error-Code": "RepoNotFound"})

        def _lookup(self) -> tuple[str, Path] | str:
            route = self.path.split("?", 1)[0].lstrip("/")
            for repo in hub.repos:
                prefix = f"{repo.repo_id}/resolve/"
                if repo.kind == "datasets":
                    prefix = f"datasets/{prefix}"
                if not route.startswith(prefix):
                    continue
                revision, _, filename = route[len(prefix) :].partition("/")
                commit = repo.refs.get(revision, revision)
                if commit not in repo.revisions:
                    return "RevisionNotFound"
                files = repo.revisions[commit]
                if filename not in files:
                    return "EntryNotFound"
                return commit, files[filename]
            return "RepoNotFound"

    return Handler


@contextmanager
def loopback(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """An HTTP server on a free port of 127.0.0.1, its URL while the block runs."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve(*repos: HubRepo) -> Iterator[FakeHub]:
    hub = FakeHub(list(repos))
    with loopback(_handler(hub)) as hub.url:
        yield hub


def hub_env(url: str, tmp_path: Path, **extra: str) -> dict[str, str]:
    """Environment for a CLI run against the hub at `url`, with private caches."""
    return {"HF_ENDPOINT": url, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_ETAG_TIMEOUT": "5", "MMLUPRO_LOCAL_CACHE": str(tmp_path / "cache"), **extra}  # fmt: skip


def run_cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The real CLI in a subprocess: huggingface_hub reads HF_* variables at import."""
    return subprocess.run(
        [sys.executable, "-m", "mmlupro_local", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=300,
    )
