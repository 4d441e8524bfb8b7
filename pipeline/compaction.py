"""RocksDB compaction that purges: for the local stores of replay and the worker's tables."""

from __future__ import annotations

from rocksdict import BottommostLevelCompaction, CompactOptions


def purging_compaction() -> CompactOptions:
    """A manual compaction that rewrites the bottom level too, so that deleted values and the
    deletion markers (whose keys may name an identifier) leave the files."""
    options = CompactOptions()
    options.set_bottommost_level_compaction(BottommostLevelCompaction.force())
    options.set_exclusive_manual_compaction(True)
    return options
