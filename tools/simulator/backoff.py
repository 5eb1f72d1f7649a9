"""Randomised exponential back-off for reconnects, so a fleet that lost its server does not return in step."""

from __future__ import annotations

import random


class Backoff:
    """The n-th wait is drawn uniformly from [cap/2, cap] with cap = min(maximum, base * 2**n); `reset()`
    after a connection that got as far as an accepted BootNotification."""

    def __init__(
        self, *, base_s: float = 1.0, maximum_s: float = 60.0, rng: random.Random | None = None
    ) -> None:
        if base_s <= 0 or maximum_s < base_s:
            raise ValueError("back-off needs 0 < base <= maximum")
        self.base_s = base_s
        self.maximum_s = maximum_s
        self.attempts = 0
        self._rng = rng or random.Random()

    def next(self) -> float:
        cap = min(self.maximum_s, self.base_s * (2 ** min(self.attempts, 30)))
        self.attempts += 1
        return self._rng.uniform(cap / 2, cap)

    def reset(self) -> None:
        self.attempts = 0
