"""A stage process whose worker is gone ends, even when its graceful stop hangs."""

from __future__ import annotations

import subprocess
import sys
import time

from pipeline.stream.supervisor import ORPHAN_EXIT_CODE

HANGING_STAGE = """
import signal, time
from pipeline.stream.supervisor import stop_when_orphaned
signal.signal(signal.SIGTERM, lambda *_: None)  # a graceful stop that never finishes
stop_when_orphaned(parent=2**22 + 7, grace_s=0.5)  # not our parent: the worker is "gone"
time.sleep(60)
"""


def test_an_orphaned_stage_with_a_hanging_stop_exits_after_the_grace_period() -> None:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-c", HANGING_STAGE], timeout=30, check=False)
    assert done.returncode == ORPHAN_EXIT_CODE
    assert time.monotonic() - started < 20
