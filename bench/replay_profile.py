"""`make bench-profile`: where replay's time goes — cProfile of the in-process engine over
generated events (the same generator and seed as `make bench`), sorted by own time."""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
from pathlib import Path

from connectors.synthetic.generator import synthetic_stream
from pipeline import garbage
from pipeline.replay.runner import replay


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--persons", type=int, default=4_000)
    parser.add_argument("--top", type=int, default=30)
    args = parser.parse_args()
    path = Path(tempfile.mkdtemp(prefix="omnistitch-profile-")) / "events.jsonl"
    events = synthetic_stream(args.persons, args.events, seed=42)
    path.write_text("".join(e.to_json() + "\n" for e in events))
    garbage.tune()  # as `omnistitch replay` does
    plain = replay(path, io.StringIO(), progress=False)
    print(f"replay without profiler: {plain.events_per_second:,.0f} ev/s")
    profiler = cProfile.Profile()
    profiler.enable()
    replay(path, io.StringIO(), progress=False)
    profiler.disable()
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.sort_stats("tottime").print_stats(args.top)
    stats.sort_stats("cumulative").print_stats(args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
