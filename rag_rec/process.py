"""Background servers the project starts itself (Neo4j, vLLM): one pid file and one log
per server under the artifacts folder, a readiness check, and a clean stop."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path


class ManagedProcess:
    """A detached server process identified by `name`, with state under `folder`."""

    def __init__(self, name: str, folder: Path, marker: str):
        self.name = name
        self.folder = folder
        self.marker = marker
        """A string of the command line; a pid whose process lacks it is stale."""
        self.pid_file = folder / f"{name}.pid"
        self.log_file = folder / f"{name}.log"

    def pid(self) -> int | None:
        """The server's pid if it is running, else None (a stale pid file is removed)."""
        try:
            pid = int(self.pid_file.read_text())
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ")
        except (FileNotFoundError, ValueError):
            self.pid_file.unlink(missing_ok=True)
            return None
        if self.marker.encode() not in cmdline:
            self.pid_file.unlink(missing_ok=True)
            return None
        return pid

    def start(self, cmd: list[str], *, env: dict[str, str], ready: Callable[[], bool],
              timeout_s: float, port: int, cwd: Path | None = None) -> int:
        """Start `cmd` detached (it outlives this process), listening on loopback `port`,
        and wait until `ready()`. Raises RuntimeError with the log's tail if it exits or
        times out, and before starting anything if another process already holds `port`:
        a readiness probe of that port would otherwise pass on the other server's answers
        while ours dies unable to bind."""
        running = self.pid()
        if running is not None:
            return running
        if _listening(port):
            raise RuntimeError(f"port {port} is already taken by another process (not the "
                               f"{self.name} under {self.folder}): stop it, or give this "
                               "server another port")
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.log_file, "ab") as log:
            proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid_file.write_text(str(proc.pid))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                self.pid_file.unlink(missing_ok=True)
                raise RuntimeError(f"{self.name} exited with code {proc.returncode}; "
                                   f"log {self.log_file}:\n{self.tail()}")
            if ready():
                return proc.pid
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(f"{self.name} was not ready within {timeout_s:.0f}s; "
                           f"log {self.log_file}:\n{self.tail()}")

    def stop(self, timeout_s: float = 60.0) -> bool:
        """SIGTERM, then SIGKILL after `timeout_s`. False if it was not running."""
        pid = self.pid()
        if pid is None:
            return False
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            if _reap(pid):
                break
            time.sleep(0.2)
        else:
            if Path(f"/proc/{pid}").exists():
                os.killpg(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
        return True

    def tail(self, lines: int = 20) -> str:
        if not self.log_file.exists():
            return ""
        return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(1.0)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _reap(pid: int) -> bool:
    """Reap `pid` if it is our exited child (else it lingers as a zombie in /proc)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == pid
    except ChildProcessError:
        return False
