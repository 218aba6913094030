"""A real llama-server on 127.0.0.1 for the end-to-end tests, built (once, cached) from
the llama.cpp vendored in the same llama-cpp-python release as the wheel."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from credentials import API_KEY

ROOT = Path(__file__).resolve().parents[1]
LLAMA_CPP_VERSION = "0.3.36"


def server_binary() -> Path:
    """`make test` passes the cached binary; otherwise build or find it the same way."""
    given = os.environ.get("MMLUPRO_LLAMA_SERVER")
    if given:
        return Path(given)
    python = ROOT / ".venv" / "bin" / "python"
    out = subprocess.run(
        [str(ROOT / "scripts" / "llama_server.sh"), str(python), LLAMA_CPP_VERSION],
        capture_output=True,
        text=True,
        check=True,
        timeout=1800,
    )
    return Path(out.stdout.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class LlamaServer:
    binary: Path
    model: Path
    port: int
    slots: int
    ctx: int
    api_key: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> None:
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"llama-server-{self.port}.log"
        with log.open("ab") as sink:  # the child keeps its own copy of the descriptor
            self.process = subprocess.Popen(
                [str(self.binary), "-m", str(self.model), "--host", "127.0.0.1",
                 "--port", str(self.port), "-np", str(self.slots), "-c", str(self.ctx),
                 "--threads", "2", "--seed", "0", "--api-key", self.api_key],
                stdout=sink, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"llama-server exited with {self.process.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=1) as r:
                    if r.status == 200:
                        return
            except OSError:  # not listening yet, or loading (503)
                pass
            time.sleep(0.2)
        raise RuntimeError("llama-server did not become healthy in 120 s")

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@contextmanager
def llama_server(model: Path, *, slots: int = 1, ctx: int = 4096) -> Iterator[LlamaServer]:
    """A server that wants `API_KEY` (the client is given it in MMLUPRO_API_KEY, and the
    session's credential audit checks that nothing shows it)."""
    server = LlamaServer(server_binary(), model, free_port(), slots, ctx * slots, API_KEY)
    server.start()
    try:
        yield server
    finally:
        server.kill()
