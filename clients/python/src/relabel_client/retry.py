"""When to send a request again: 429 and 503 (the API rolls the write back before answering 503, and a
throttled request was never run), with exponential backoff unless the server says how long to wait."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

RETRY_STATUSES = frozenset({429, 503})


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP date; ``None`` when absent or
    unreadable."""
    if value is None or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


@dataclass(frozen=True)
class RetryPolicy:
    """``max_retries`` further tries after the first; the n-th retry waits ``backoff * 2**n`` seconds
    (capped at ``max_backoff``, with up to ``jitter`` of it added at random) unless the answer carried a
    ``Retry-After``, which is honoured as given up to ``max_retry_after`` (a longer wait is not retried:
    the error is raised with ``retry_after`` set). Connection errors are retried only for GET requests."""

    max_retries: int = 5
    backoff: float = 0.5
    max_backoff: float = 30.0
    max_retry_after: float = 120.0
    jitter: float = 0.1

    def delay(self, attempt: int, headers: Mapping[str, str] | None = None) -> float | None:
        """Seconds to sleep before retry number ``attempt`` (0-based), or ``None`` to stop retrying."""
        if attempt >= self.max_retries:
            return None
        asked = parse_retry_after((headers or {}).get("Retry-After"))
        if asked is not None:
            return asked if asked <= self.max_retry_after else None
        base = min(self.max_backoff, self.backoff * (2 ** attempt))
        return base + random.uniform(0, self.jitter * base) if self.jitter else base


NO_RETRIES = RetryPolicy(max_retries=0)
