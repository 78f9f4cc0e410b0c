"""Waiting for the asynchronous parts of the system (watches, workers) in tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(predicate: Callable[[], T], timeout: float = 15.0,
               what: str | Callable[[], str] = "condition", *, interval: float = 0.05,
               retry_on: tuple[type[BaseException], ...] = ()) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns something truthy, and
    return that value; fail with an AssertionError after ``timeout`` seconds.

    - ``predicate`` is always called at least once, and once more when the time is up, so a
      slow call never turns a reached condition into a failure.
    - An exception of a type in ``retry_on`` counts as "not yet" (a call that raises until the
      system is ready, such as a 403 while RBAC catches up); any other exception propagates.
    - ``what`` names the awaited condition in the failure; it may be a callable, called only
      on failure, to describe the state reached instead (a log tail, the value last seen).
      The failure also shows the last value returned or the last exception, chained.
    """
    deadline = time.monotonic() + timeout
    while True:
        error: BaseException | None = None
        try:
            value = predicate()
        except retry_on as exc:
            error, last = exc, exc
        else:
            if value:
                return value
            last = value
        if time.monotonic() >= deadline:
            description = what() if callable(what) else what
            raise AssertionError(
                f"{description} not reached within {timeout}s (last: {last!r})") from error
        time.sleep(interval)  # the polling interval: this helper is where tests wait
