"""What a worker serves now: a routing table and its loaded models, swapped as one snapshot."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from modelbus.events import new_meta
from modelbus.events import types as t
from modelbus_inference.domain import ModelHistory, Registration, Route, RoutingTable
from modelbus_inference.loading import LoadFailed, ServedModel

log = structlog.get_logger(__name__)
Loader = Callable[[Registration], ServedModel]
PINNED = "pinned"


@dataclass(frozen=True, slots=True)
class Serving:
    """An immutable snapshot: every version the table routes to is loaded."""

    table: RoutingTable
    models: dict[int, ServedModel]
    pinnable: dict[int, ServedModel] = field(default_factory=dict)

    def route(self, key: bytes, pinned: int | None = None) -> tuple[Route, ServedModel]:
        """The route and the model for a request key.

        A request pinned to a loaded version gets that version as variant ``pinned`` (never
        canary evidence); pinned to a version not loaded here, it is routed normally.
        """
        if pinned is not None:
            model = self.pinnable.get(pinned)
            if model is not None:
                return Route(PINNED, pinned, 0.0), model
        route = self.table.route(key)
        return route, self.models[route.version]


class ModelManager:
    """Folds lifecycle events into a Serving snapshot; a version that fails keeps the old one."""

    def __init__(
        self,
        model: str,
        loader: Loader,
        *,
        worker: str,
        serve_latest_without_routes: bool = False,
    ) -> None:
        self.model = model
        self.loader = loader
        self.worker = worker
        self.serve_latest_without_routes = serve_latest_without_routes
        self.history = ModelHistory(model)
        self.loaded: dict[int, ServedModel] = {}
        self.failures: dict[int, str] = {}
        self.serving: Serving | None = None
        self.ready = threading.Event()
        self._lock = threading.Lock()

    def register(self, registration: Registration, *, cause: Any = None, load: bool = True) -> list:
        """A ModelRegistered: remember it, pre-load it (warm), and serve it if routed."""
        with self._lock:
            self.history.register(registration)
            self.loaded.pop(registration.version, None)
            self.failures.pop(registration.version, None)
            if not load:
                return []
            events = self._load(registration.version, cause)
            return events + self._reconcile(cause)

    def shift(self, table: RoutingTable, *, cause: Any = None, load: bool = True) -> list:
        """A TrafficShifted: load what the new table needs, then swap, or keep the old one."""
        with self._lock:
            self.history.shift(table)
            return self._reconcile(cause) if load else []

    def reconcile(self, *, cause: Any = None) -> list:
        """Load and serve what the folded history asks for (after a replay)."""
        with self._lock:
            return self._reconcile(cause)

    def _reconcile(self, cause: Any) -> list:
        desired = self.history.desired_routes(
            serve_latest_without_routes=self.serve_latest_without_routes
        )
        if desired is None:
            return []
        events = []
        for version in sorted(desired.versions - set(self.loaded)):
            events += self._load(version, cause)
        missing = desired.versions - set(self.loaded)
        if missing:
            log.warning(
                "keeping the previous routing",
                model=self.model,
                unavailable=sorted(missing),
                serving=None if self.serving is None else sorted(self.serving.table.versions),
            )
            return events
        keep = desired.versions | {max(self.history.registrations, default=0)}
        for version in set(self.loaded) - keep:
            del self.loaded[version]
        self.serving = Serving(
            desired, {v: self.loaded[v] for v in desired.versions}, dict(self.loaded)
        )
        self.ready.set()
        return events

    def _load(self, version: int, cause: Any) -> list:
        if version in self.loaded:
            return []
        registration = self.history.registrations.get(version)
        meta = new_meta(self.worker, cause=cause)
        if registration is None:
            reason = f"version {version} was never registered (no ModelRegistered seen)"
        else:
            try:
                served = self.loader(registration)
            except LoadFailed as error:
                reason = str(error)
            except Exception as error:
                reason = f"{type(error).__name__}: {error}"
            else:
                self.loaded[version] = served
                self.failures.pop(version, None)
                log.info("model loaded", model=self.model, version=version, load_ms=served.load_ms)
                return [
                    t.ModelLoaded(
                        meta=meta,
                        model=self.model,
                        version=version,
                        worker=self.worker,
                        environment_check=served.environment_check,
                        load_ms=served.load_ms,
                    )
                ]
        self.failures[version] = reason
        log.warning("model load failed", model=self.model, version=version, reason=reason)
        return [
            t.ModelLoadFailed(
                meta=meta, model=self.model, version=version, worker=self.worker, reason=reason
            )
        ]
