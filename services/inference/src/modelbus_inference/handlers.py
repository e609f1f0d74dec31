"""Lifecycle handlers: plain functions of an event and the ModelManager, returning events."""

from __future__ import annotations

from collections.abc import Callable

from modelbus.events import types as t
from modelbus_inference.domain import Registration, Route, RoutingTable
from modelbus_inference.serving import ModelManager


def model_registered(event: t.ModelRegistered, models: ModelManager) -> list:
    """Pre-load a newly registered version; serve it if the routing already asks for it."""
    if event.model != models.model:
        return []
    registration = Registration(event.version, event.artifact_uri, event.artifact_sha256)
    return models.register(registration, cause=event)


def traffic_shifted(event: t.TrafficShifted, models: ModelManager) -> list:
    """Follow the new routing table once every version in it is loaded."""
    if event.model != models.model:
        return []
    table = RoutingTable.of(Route(r.variant, r.version, r.weight_pct) for r in event.routes)
    return models.shift(table, cause=event)


def replay(event: object, models: ModelManager) -> None:
    """Fold a historical event without loading anything (start-up replay)."""
    if isinstance(event, t.ModelRegistered) and event.model == models.model:
        models.register(
            Registration(event.version, event.artifact_uri, event.artifact_sha256), load=False
        )
    elif isinstance(event, t.TrafficShifted) and event.model == models.model:
        routes = (Route(r.variant, r.version, r.weight_pct) for r in event.routes)
        models.shift(RoutingTable.of(routes), load=False)


EVENT_HANDLERS: dict[type, list[Callable[..., list]]] = {
    t.ModelRegistered: [model_registered],
    t.TrafficShifted: [traffic_shifted],
}
