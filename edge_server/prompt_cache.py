"""A small thread-safe LRU for prompt embeddings, keyed by the exact prompt text.

A kiosk that repeats prompts skips the text encoder on a hit. Values are stored as given
(the caller stores read-only arrays and hands out copies); hits and misses are counted.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

DEFAULT_PROMPT_CACHE_SIZE = 32


class PromptCache:
    """LRU of at most `capacity` entries (0 disables caching: every lookup is a miss)."""

    def __init__(self, capacity: int = DEFAULT_PROMPT_CACHE_SIZE) -> None:
        self._lock = threading.Lock()
        self._data: OrderedDict[str, Any] = OrderedDict()
        self._capacity = 0
        self.hits = 0
        self.misses = 0
        self.evictions = 0
        self.capacity = capacity

    @property
    def capacity(self) -> int:
        return self._capacity

    @capacity.setter
    def capacity(self, n: int) -> None:
        if not isinstance(n, int) or isinstance(n, bool) or n < 0:
            raise ValueError(f"prompt cache size must be an integer >= 0, got {n!r}")
        with self._lock:
            self._capacity = n
            self._trim()

    def _trim(self) -> None:
        while len(self._data) > self._capacity:
            self._data.popitem(last=False)
            self.evictions += 1

    def get(self, key: str) -> Any | None:
        """The value for `key` (marking it most recently used) or None; counts a hit or miss."""
        with self._lock:
            value = self._data.get(key)
            if value is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)
            self.hits += 1
            return value

    def put(self, key: str, value: Any) -> None:
        if value is None:
            raise ValueError("cannot cache None")
        with self._lock:
            if self._capacity == 0:
                return
            self._data[key] = value
            self._data.move_to_end(key)
            self._trim()

    def __contains__(self, key: object) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        with self._lock:
            return len(self._data)

    def clear(self) -> None:
        """Drop every entry (the counters are kept)."""
        with self._lock:
            self._data.clear()

    def reset_stats(self) -> None:
        with self._lock:
            self.hits = self.misses = self.evictions = 0

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "size": len(self._data),
                "capacity": self._capacity,
                "hits": self.hits,
                "misses": self.misses,
                "evictions": self.evictions,
            }
