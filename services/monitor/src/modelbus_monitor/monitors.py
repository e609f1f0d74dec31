"""The models being watched: one ModelMonitor each, and where their training profiles come from."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from modelbus.packaging import PROFILE, PackageError, resolve_package, verify_package
from modelbus_monitor.domain import ModelMonitor
from modelbus_monitor.evidence import Gates
from modelbus_monitor.reference import Reference, reference_from_profile

log = structlog.get_logger(__name__)

ReferenceLoader = Callable[[str, str | None], Reference]


def load_reference(artifact_uri: str, sha256: str | None) -> Reference:
    """The verified package's ``profile.json`` (every file hashed, nothing unpickled)."""
    directory = resolve_package(artifact_uri)
    verify_package(directory, expected_sha256=sha256)
    return reference_from_profile(json.loads((directory / PROFILE).read_text()))


@dataclass
class Monitors:
    """ModelMonitor per model name; models first seen are queued for their topics."""

    gates: Gates
    join_window_s: float
    window_s: float
    lateness_s: float
    cooldown_s: float
    rearm_after: int
    loader: ReferenceLoader = load_reference
    pattern: str = r"[^.]+"
    models: dict[str, ModelMonitor] = field(default_factory=dict)
    unsubscribed: list[str] = field(default_factory=list)

    def watches(self, model: str) -> bool:
        """Whether ``model`` is one this monitor watches."""
        return re.fullmatch(self.pattern, model) is not None

    def get_or_create(self, model: str) -> ModelMonitor:
        """The model's monitor, created (and queued for subscription) on first sight."""
        monitor = self.models.get(model)
        if monitor is None:
            monitor = self.models[model] = ModelMonitor(
                model,
                self.gates,
                join_window_s=self.join_window_s,
                window_s=self.window_s,
                lateness_s=self.lateness_s,
                cooldown_s=self.cooldown_s,
                rearm_after=self.rearm_after,
            )
            self.unsubscribed.append(model)
        return monitor

    def register(self, model: str, version: int, artifact_uri: str, sha256: str | None) -> None:
        """Watch ``model`` and profile ``version``; a package that fails to verify is logged
        and its version is watched for health only."""
        monitor = self.get_or_create(model)
        try:
            monitor.register(version, self.loader(artifact_uri, sha256))
        except (PackageError, OSError, ValueError, KeyError) as error:
            log.warning("no profile: health only", model=model, version=version, error=str(error))
