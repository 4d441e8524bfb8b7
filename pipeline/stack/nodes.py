"""What every process of the local stack shares: its configuration (ports, folders) and the
node base class that starts a process detached, finds it again by its marker argument and stops
it for sure (pipeline.stack.local: Kafka and the registry; pipeline.stack.vault: the vault)."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

from pipeline.exceptions import StackError, StackNotReadyError

REGISTRY_API_PATH = "/apis/ccompat/v7"  # Apicurio's Confluent-compatible API


@dataclass(frozen=True)
class StackConfig:
    """Where the stack lives and which loopback ports it uses."""

    home: Path
    lib_dir: Path
    kafka_port: int = 9092
    controller_port: int = 9093
    registry_port: int = 8081
    vault_port: int = 8200
    kafka_heap: str = "512m"
    registry_heap: str = "384m"
    ready_timeout_s: float = 90.0
    # A SASL_SSL listener (SCRAM-SHA-256/512, a CA of its own) on this port, besides the
    # loopback PLAINTEXT one; its users and passwords in ``secure_users``.
    secure_port: int | None = None
    secure_users: tuple[tuple[str, str], ...] = ()

    @property
    def secure_bootstrap_servers(self) -> str:
        return f"localhost:{self.secure_port}"

    @property
    def vault_url(self) -> str:
        return f"http://127.0.0.1:{self.vault_port}"

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @property
    def registry_url(self) -> str:
        return f"http://127.0.0.1:{self.registry_port}{REGISTRY_API_PATH}"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def port_open(port: int, host: str = "127.0.0.1", timeout_s: float = 0.5) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout_s)
        return sock.connect_ex((host, port)) == 0


class JavaNode:
    """One JVM of the stack: started detached, found again by its marker, stopped for sure."""

    name = "node"

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.dir = config.home.resolve() / self.name
        self.log_file = self.dir / "logs" / f"{self.name}.log"
        self.marker = f"-Domnistitch.stack={self.dir}"

    # -- to be provided by subclasses -------------------------------------------------------
    def command(self) -> list[str]:
        raise NotImplementedError

    def prepare(self) -> None:
        """Write configuration / format storage before the first start."""

    def ready(self) -> bool:
        raise NotImplementedError

    def ports(self) -> tuple[int, ...]:
        raise NotImplementedError

    def environment(self) -> dict[str, str] | None:
        """The process environment (None: this process's)."""
        return None

    # -- shared behaviour -------------------------------------------------------------------
    def pids(self) -> list[int]:
        """Every live process of this node (there should be at most one)."""
        found = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                cmdline = proc.info.get("cmdline") or []
                if self.marker in cmdline and proc.status() != psutil.STATUS_ZOMBIE:
                    found.append(int(proc.info["pid"]))
        return found

    def start(self) -> bool:
        """Start unless already running. Returns True if a process was started."""
        if self.pids():
            return False
        busy = [port for port in self.ports() if port_open(port)]
        if busy:
            raise StackError(
                f"{self.name}: port(s) {busy} on 127.0.0.1 are taken by another process; "
                "stop it or choose other ports (OMNISTITCH_KAFKA_PORT, OMNISTITCH_REGISTRY_PORT)"
            )
        self.log_file.parent.mkdir(parents=True, exist_ok=True)
        self.prepare()
        with self.log_file.open("ab") as log:
            subprocess.Popen(
                self.command(),
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self.environment(),
            )
        return True

    def wait_ready(self, timeout_s: float) -> float:
        """Block until ready; returns the seconds waited. Raises StackNotReadyError."""
        started = time.monotonic()
        deadline = started + timeout_s
        while time.monotonic() < deadline:
            if not self.pids():
                raise StackNotReadyError(
                    f"{self.name} exited during start-up; last log lines:\n{self.tail(25)}"
                )
            if self.ready():
                return time.monotonic() - started
            time.sleep(0.25)
        raise StackNotReadyError(
            f"{self.name} not ready after {timeout_s:.0f}s (log: {self.log_file}); "
            f"last log lines:\n{self.tail(25)}"
        )

    def stop(self, timeout_s: float = 30.0) -> int:
        """Stop every process of this node: SIGTERM, then SIGKILL. Returns how many stopped."""
        pids = self.pids()
        procs = []
        for pid in pids:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc = psutil.Process(pid)
                proc.send_signal(signal.SIGTERM)
                procs.append(proc)
        _, alive = psutil.wait_procs(procs, timeout=timeout_s)
        for proc in alive:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
        psutil.wait_procs(alive, timeout=10)
        if self.pids():
            raise StackError(f"{self.name}: processes {self.pids()} survived SIGKILL")
        return len(procs)

    def tail(self, lines: int) -> str:
        if not self.log_file.exists():
            return "(no log yet)"
        with self.log_file.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 200 * lines))
            data = fh.read().decode("utf-8", errors="replace")
        return "\n".join(data.splitlines()[-lines:])
