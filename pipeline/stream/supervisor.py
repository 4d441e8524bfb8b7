"""``omnistitch worker``: every stage of the worker in a process of its own, supervised.

    omnistitch worker ─┬─ omnistitch stage intake   (confluent-kafka: pipeline.stream.intake_loop)
                       ├─ omnistitch stage link     (faust app <app id>: the graph table)
                       └─ omnistitch stage profile  (faust app <app id>.profile: customers)

One process per stage gives each its own core and event loop: the linker (one partition, the
single writer of the graph) no longer shares a core with the profile stage, and each faust app
is one consumer group of identical members, as faust's assignor expects. Operators still run one
command; ``OMNISTITCH_WORKER_STAGES`` picks the stages a machine runs (e.g. the linker on one
machine, intake and profiles on the others).

A stage process that ends unexpectedly is restarted with backoff; SIGTERM/SIGINT stops them all
(each finishes its batch and commits); a stage process whose worker is gone (SIGKILL) stops by
itself within a second, so a killed worker leaves nothing running.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipeline.metrics import (
    MULTIPROC_ENV,
    forget_process,
    probe_server,
    ready_stages,
    stage_registry,
)

log = logging.getLogger("omnistitch.worker")

STAGES = ("intake", "link", "profile")
CRASH_LOOP_WINDOW_S = 300.0
# A stage whose worker is gone stops gracefully, or is ended this many seconds later.
ORPHAN_GRACE_S = 60.0
ORPHAN_EXIT_CODE = 3


def parent_alive(parent: int) -> Callable[[], bool]:
    """For a child process: False once the process that started it is gone."""
    return lambda: os.getppid() == parent


def stop_when_orphaned(parent: int, grace_s: float = ORPHAN_GRACE_S) -> None:
    """In a stage process: SIGTERM to itself (a graceful stop) once ``parent`` is gone, and an
    immediate exit ``grace_s`` later if that stop hangs (seen when the broker went away with
    the worker: faust's shutdown waited for it for hours). Nothing is lost by the hard exit:
    offsets are committed only after a batch's outputs and state were acknowledged."""
    alive = parent_alive(parent)

    def watch() -> None:
        while alive():
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(grace_s)
        log.warning("the worker is gone and the graceful stop hangs: exiting now")
        os._exit(ORPHAN_EXIT_CODE)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


class StageProcess:
    """One stage (``omnistitch stage <name> --parent <pid>``) as a child process: restarted
    when it ends unexpectedly, stopped with the worker."""

    def __init__(self, stage: str) -> None:
        self.stage = stage
        self.argv = [
            sys.executable,
            "-m",
            "pipeline.cli",
            "stage",
            stage,
            "--parent",
            str(os.getpid()),
        ]
        self.proc: Any = None
        self.stopping = False
        self.thread: Any = None
        self.restarts: list[float] = []  # monotonic times of unexpected ends

    def start(self) -> None:
        self._spawn()
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _spawn(self) -> None:
        self.proc = subprocess.Popen(self.argv)

    def _watch(self) -> None:
        delay = 1.0
        while not self.stopping:
            code = self.proc.wait()
            forget_process(self.proc.pid)
            if self.stopping:
                return
            self.restarts.append(time.monotonic())
            log.warning("%s process ended (exit %s); restarting in %.0fs", self.stage, code, delay)
            time.sleep(delay)
            delay = min(delay * 2, 30.0)
            if not self.stopping:
                self._spawn()

    def terminate(self) -> None:
        self.stopping = True
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()

    def wait(self, timeout_s: float = 60.0) -> None:
        if self.proc is None:
            return
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def running(self: StageProcess) -> bool:
    return self.proc is not None and self.proc.poll() is None


def supervise(
    stages: frozenset[str],
    metrics_port: int = 0,
    data_dir: Path | None = None,
    metrics_host: str = "127.0.0.1",
) -> int:
    """Start a process per stage and keep them running until SIGTERM or SIGINT; with
    ``metrics_port``, serve the stages' metrics (Prometheus multi-process mode: each stage
    writes its own files under ``<data_dir>/metrics``) and the worker's health."""
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_args: stop.set())
    children = [StageProcess(stage) for stage in STAGES if stage in stages]
    if metrics_port:
        folder = (data_dir or Path(".")) / "metrics"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        os.environ[MULTIPROC_ENV] = str(folder)  # inherited by the stage processes

        def live() -> bool:
            """Every stage running, none restarted 3 times in the last 5 minutes."""
            recent = time.monotonic() - CRASH_LOOP_WINDOW_S
            return all(running(c) and sum(t > recent for t in c.restarts) < 3 for c in children)

        def ready() -> bool:
            return live() and ready_stages(folder) >= {c.stage for c in children}

        registry = stage_registry(folder, children)
        probe_server(metrics_port, live, ready, host=metrics_host, registry=registry)
    for child in children:
        child.start()
    log.info("worker: stages %s started", ", ".join(c.stage for c in children))
    stop.wait()
    for child in children:
        child.terminate()
    for child in children:
        child.wait()
    return 0
