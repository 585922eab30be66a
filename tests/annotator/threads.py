"""Run callables at once, each in its own thread (and so its own database connection)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection


def at_once(*targets: Callable[[], object], timeout: float = 60, what: str = "a thread") -> None:
    """Start every target in its own thread, wait for all, and re-raise the first error any of them raised."""
    errors: list[BaseException] = []

    def run(target: Callable[[], object]) -> None:
        try:
            target()
        except BaseException as error:  # noqa: BLE001 - reported by the calling thread
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(target,)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    assert not any(thread.is_alive() for thread in threads), f"{what} hung"
    if errors:
        raise errors[0]
