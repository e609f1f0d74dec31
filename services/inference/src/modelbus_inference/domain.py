"""Routing and the catalogue of registered versions: pure state, no I/O."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

BUCKETS = 10_000
CHAMPION = "champion"
SHADOW = "shadow"


def bucket_of(key: bytes) -> int:
    """Stable bucket 0..9999 of a request key (same key, same bucket, on every worker)."""
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") % BUCKETS


@dataclass(frozen=True, slots=True)
class Route:
    """One variant's share of a model's traffic."""

    variant: str
    version: int
    weight_pct: float


@dataclass(frozen=True, slots=True)
class RoutingTable:
    """Weights -> bucket ranges: a key's bucket picks its variant."""

    routes: tuple[Route, ...]
    _upper: tuple[int, ...] = field(default=(), repr=False, compare=False)
    shadow: Route | None = None
    """A version that also scores every champion-routed request, answering no caller."""

    @classmethod
    def of(cls, routes: Iterable[Route]) -> RoutingTable:
        """Build from routes; non-champion ranges come first.

        Canaries take the low buckets, so raising a canary's weight (5 -> 25 -> 50) only moves
        entities from champion to canary, never back and forth. A route of variant ``shadow``
        takes no bucket: it mirrors the champion's traffic.

        >>> table = RoutingTable.of([Route("champion", 1, 100.0), Route("shadow", 2, 0.0)])
        >>> table.route(b"any key"), table.shadow.version, sorted(table.versions)
        (Route(variant='champion', version=1, weight_pct=100.0), 2, [1, 2])
        """
        given = list(routes)
        shadow = next((r for r in given if r.variant == SHADOW), None)
        live = [r for r in given if r.weight_pct > 0 and r.variant != SHADOW]
        if not live:
            raise ValueError("a routing table needs at least one route with weight > 0")
        total = sum(r.weight_pct for r in live)
        ordered = sorted(live, key=lambda r: (r.variant == CHAMPION, r.variant, r.version))
        upper, running = [], 0.0
        for route in ordered:
            running += route.weight_pct
            upper.append(round(running / total * BUCKETS))
        upper[-1] = BUCKETS
        return cls(tuple(ordered), tuple(upper), shadow)

    @classmethod
    def single(cls, version: int) -> RoutingTable:
        """All traffic to one champion version."""
        return cls.of([Route(CHAMPION, version, 100.0)])

    @property
    def versions(self) -> set[int]:
        """Versions this table sends traffic to (a shadow's mirrored traffic included)."""
        versions = {r.version for r in self.routes}
        if self.shadow is not None:
            versions.add(self.shadow.version)
        return versions

    def route(self, key: bytes) -> Route:
        """The route a key takes."""
        if len(self.routes) == 1:
            return self.routes[0]
        bucket = bucket_of(key)
        for route, upper in zip(self.routes, self._upper, strict=True):
            if bucket < upper:
                return route
        return self.routes[-1]


@dataclass(frozen=True, slots=True)
class Registration:
    """Where a registered version's package lies."""

    version: int
    artifact_uri: str
    artifact_sha256: str


@dataclass(slots=True)
class ModelHistory:
    """One model's lifecycle folded: what is registered and the routing asked for."""

    model: str
    registrations: dict[int, Registration] = field(default_factory=dict)
    requested_routes: RoutingTable | None = None

    def register(self, registration: Registration) -> None:
        """Record a ModelRegistered."""
        self.registrations[registration.version] = registration

    def shift(self, table: RoutingTable) -> None:
        """Record a TrafficShifted."""
        self.requested_routes = table

    def desired_routes(self, *, serve_latest_without_routes: bool) -> RoutingTable | None:
        """The table to serve now, or None when nothing can be served."""
        if self.requested_routes is not None:
            return self.requested_routes
        if serve_latest_without_routes and self.registrations:
            return RoutingTable.single(max(self.registrations))
        return None
