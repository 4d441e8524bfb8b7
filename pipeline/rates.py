"""Rate limits: a token bucket per key (the collector's write keys, the destinations)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class TokenBucket:
    """Requests per second per key, with a burst."""

    rate: float
    capacity: float
    now: Callable[[], float] = time.monotonic
    _levels: dict[str, tuple[float, float]] = field(default_factory=dict)

    def take(self, key: str) -> bool:
        moment = self.now()
        level, last = self._levels.get(key, (self.capacity, moment))
        level = min(self.capacity, level + (moment - last) * self.rate)
        if level < 1:
            self._levels[key] = (level, moment)
            return False
        self._levels[key] = (level - 1, moment)
        return True

    def wait_s(self, key: str) -> float:
        """Seconds until ``take(key)`` can succeed (0: now)."""
        level, last = self._levels.get(key, (self.capacity, self.now()))
        level = min(self.capacity, level + (self.now() - last) * self.rate)
        return 0.0 if level >= 1 else (1 - level) / self.rate
