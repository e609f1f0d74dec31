"""Wiring helpers every service's bootstrap uses."""

from __future__ import annotations

import inspect
import signal
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import Any

from modelbus.bus.dispatch import Handler

BROKER_CHECK_S = 10.0
"""How long a starting service waits for the broker's first answer before going on to its own
retries (a broker that is still starting is not a misconfiguration)."""


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


def refuse_misconfigured_broker(service: str, bootstrap_servers: str) -> None:
    """Exit 2 with the cause and the ``MODELBUS_KAFKA_*`` setting to fix when the broker refuses
    this service's TLS, login or protocol; without this, librdkafka says only "Broker transport
    failure" and aiokafka "Unable to bootstrap", after their timeouts.

    A broker that does not answer within ``BROKER_CHECK_S`` is left to the service's own
    retries, with a warning: it may still be starting.
    """
    import structlog

    from modelbus.bus.connection_check import (
        BrokerMisconfigured,
        BrokerUnreachable,
        check_connection,
    )

    try:
        check_connection(bootstrap_servers, timeout_s=BROKER_CHECK_S)
    except BrokerMisconfigured as error:
        print(f"{service}: refusing to start: {error}", file=sys.stderr)
        raise SystemExit(2) from error
    except BrokerUnreachable as error:
        structlog.get_logger(service).warning("broker not answering yet", reason=str(error))
