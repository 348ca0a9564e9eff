"""A real Kinema server in a subprocess, as a user starts it, for end-to-end tests."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SERVER_NODES = ROOT / "tests" / "fixtures" / "server_nodes"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class LiveServer:
    """``python server.py`` on a free port with its own base folder; stopped on exit."""

    def __init__(self, base_dir: Path, *extra: str, port: int | None = None):
        self.base_dir = base_dir
        self.port = port or free_port()
        self.extra = extra
        self.proc: subprocess.Popen | None = None
        self.url = f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> LiveServer:
        log = open(self.base_dir / f"server-{self.port}.log", "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "server.py", "--port", str(self.port), "--base-dir",
             str(self.base_dir), "--custom-nodes", str(SERVER_NODES), *self.extra],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log_text()}")
            try:
                self.get("/system_stats")
                return self
            except urllib.error.HTTPError:
                return self  # it answers (a guarded server answers 401)
            except OSError:
                time.sleep(0.1)
        raise TimeoutError(f"server did not start: {self.log_text()}")

    def log_text(self) -> str:
        return (self.base_dir / f"server-{self.port}.log").read_text(errors="replace")

    def get(self, path: str) -> object:
        with urllib.request.urlopen(self.url + path, timeout=10) as response:
            return json.loads(response.read() or b"null")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait(30)

    def __enter__(self) -> LiveServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.kill(signal.SIGTERM)
