"""Garbage collection for a throughput-bound stream processor.

The stitching state and a batch's working set are many long-lived small objects; CPython's
default thresholds (a young collection every 700 allocations, older ones after 10 of those)
make the collector traverse them over and over: in replay, parsing alone ran ~3x slower with
the collector on than off (measured with bench.replay_profile's events). ``tune()`` moves
everything alive after start-up out of the collector's sight (``gc.freeze``) and collects
young objects every 50,000 allocations. Reference cycles are still collected, later.
"""

from __future__ import annotations

import gc

THRESHOLDS = (50_000, 20, 100)


def tune() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
