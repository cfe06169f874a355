"""Throttling at the service's door: an exponential back-off per client address after repeated
bad API keys, and each key's own request rate (``keys create ... --rate 10/s``).

Keys hold 256 random bits, so no rate of guessing could find one: the back-off is about
flooding and noise (NIST SP 800-63B asks authenticators to limit failed attempts), not about
keeping a key secret. It therefore never stands between a VALID key and the service: a request
whose key is good is served even from an address in back-off, so nobody's guessing can lock a
key's owner out (:mod:`facesys.service.auth` checks the key first).

Both are kept in this process's memory: with ``serve --workers N`` each worker counts on its own
(a client may get up to N times the rate), and a restart forgets them.
"""

from __future__ import annotations

import collections
import ipaddress
import math
import threading
import time
from dataclasses import dataclass

from limits import parse
from limits.storage import MemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter

FREE_FAILURES = 5  # bad keys an address may send before its back-off starts
BACKOFF_BASE_S = 1.0  # the wait after the FREE_FAILURES-th failure; doubled by each further one
BACKOFF_CAP_S = 300.0  # the longest wait
FORGET_AFTER_S = 900.0  # an address without a failure for this long starts afresh
MAX_ADDRESSES = 10_000  # addresses remembered at most (the one failing longest ago is forgotten first)


def client_key(host: str) -> str:
    """What the back-off counts by: the address, an IPv6 one by its /64 (a host usually holds the
    whole /64, so counting single addresses would let it step around its back-off)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


@dataclass
class _Failures:
    count: int = 0
    last: float = 0.0  # when the last failure was counted (monotonic)
    until: float = 0.0  # no bad key is looked at before this (monotonic)
    announced: bool = False  # whether the current back-off's first 429 was logged


class FailureBackoff:
    """Bad keys per client address: after ``free`` failures, each one makes the address wait
    ``base`` seconds, doubled by every further failure up to ``cap``; forgotten after ``forget``
    quiet seconds; at most ``max_addresses`` remembered. Thread-safe."""

    def __init__(
        self,
        free: int = FREE_FAILURES,
        base: float = BACKOFF_BASE_S,
        cap: float = BACKOFF_CAP_S,
        forget: float = FORGET_AFTER_S,
        max_addresses: int = MAX_ADDRESSES,
    ):
        self.free, self.base, self.cap, self.forget, self.max_addresses = free, base, cap, forget, max_addresses
        self._failures: collections.OrderedDict[str, _Failures] = collections.OrderedDict()
        self._lock = threading.Lock()

    def waiting(self, address: str, now: float | None = None) -> tuple[int, bool] | None:
        """(whole seconds left, whether this is the back-off's first refusal) while ``address`` is
        in back-off, else None."""
        now = time.monotonic() if now is None else now
        with self._lock:
            entry = self._failures.get(client_key(address))
            if entry is None or entry.until <= now:
                return None
            first, entry.announced = not entry.announced, True
            return max(1, math.ceil(entry.until - now)), first

    def failed(self, address: str, now: float | None = None) -> float:
        """Count a bad key from ``address``; returns the back-off it starts (0: none yet)."""
        now = time.monotonic() if now is None else now
        key = client_key(address)
        with self._lock:
            entry = self._failures.pop(key, None)
            if entry is None or now - entry.last >= self.forget:
                entry = _Failures()
            entry.count, entry.last, entry.announced = entry.count + 1, now, False
            wait = 0.0
            if entry.count >= self.free:
                wait = min(self.cap, self.base * 2 ** min(entry.count - self.free, 64))
                entry.until = now + wait
            self._failures[key] = entry  # the newest at the end
            while self._failures and (
                len(self._failures) > self.max_addresses or now - next(iter(self._failures.values())).last >= self.forget
            ):
                self._failures.popitem(last=False)
            return wait

    def __len__(self) -> int:
        return len(self._failures)


class KeyRates:
    """Each key's request rate (``10/second``, as stored), with the ``limits`` package's sliding
    window counter in memory (constant memory per key, whatever the rate)."""

    def __init__(self):
        self._limiter = SlidingWindowCounterRateLimiter(MemoryStorage())
        self._refused: dict[str, float] = {}  # key name -> end of the window whose refusal was logged
        self._lock = threading.Lock()

    def over(self, name: str, rate: str) -> tuple[int, bool] | None:
        """Count a request of key ``name``: None while within ``rate``, else (whole seconds until
        one is allowed, whether this is the first refusal of that wait)."""
        item = parse(rate)
        if self._limiter.hit(item, name):
            return None
        reset = self._limiter.get_window_stats(item, name).reset_time
        with self._lock:
            first = self._refused.get(name, 0.0) < time.time()
            if first:
                self._refused[name] = reset
        return max(1, math.ceil(reset - time.time())), first
