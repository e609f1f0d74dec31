"""Wiring helpers every service's bootstrap uses."""

from __future__ import annotations

import inspect
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from modelbus.bus.dispatch import Handler


def inject(
    handlers: Mapping[type, Sequence[Callable[..., Any]]], dependencies: Mapping[str, Any]
) -> dict[type, list[Handler]]:
    """Bind each handler's parameters after the event from ``dependencies``, by name.

    Handlers stay plain functions ``(event, dep_a, dep_b) -> events``; a test calls them with
    fakes, the service with real adapters.
    """
    bound: dict[type, list[Handler]] = {}
    for event_type, functions in handlers.items():
        for function in functions:
            names = list(inspect.signature(function).parameters)[1:]
            missing = [name for name in names if name not in dependencies]
            if missing:
                raise TypeError(f"{function.__qualname__} needs {missing}, which bootstrap lacks")
            handler = partial(function, **{name: dependencies[name] for name in names})
            handler.__qualname__ = function.__qualname__  # type: ignore[attr-defined]
            bound.setdefault(event_type, []).append(handler)
    return bound


def stop_on_signals() -> threading.Event:
    """An event set by SIGTERM or SIGINT: a service's ``run`` loops until it is set."""
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    return stop
