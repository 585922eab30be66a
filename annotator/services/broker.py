"""Reachability of the Celery broker (Redis)."""

from __future__ import annotations

import redis
from django.conf import settings


def broker_status(timeout: float = 0.5) -> str:
    try:
        client = redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=timeout, socket_timeout=timeout)
        client.ping()
    except (redis.RedisError, OSError, ValueError):
        return "down"
    return "ok"
