"""Waiting for an asynchronous outcome: poll with a deadline, never a bare sleep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_fixed


class NotYet(AssertionError):
    """The outcome awaited has not happened yet."""


def eventually(check: Callable[[], Any], timeout_s: float = 60.0) -> Any:
    """Call ``check`` until it stops raising NotYet, or fail after ``timeout_s``."""
    return retry(
        retry=retry_if_exception_type(NotYet),
        stop=stop_after_delay(timeout_s),
        wait=wait_fixed(0.5),
        reraise=True,
    )(check)()
