"""A registry whose database is empty or behind takes the lifecycle log as the truth."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelbus.events import types as t
from modelbus_registry.bootstrap import Registry, bootstrap
from modelbus_registry.config import Settings
from modelbus_registry.domain import AnnouncedVersions
from modelbus_registry.handlers import register_trained_model
from modelbus_registry.mirror import NoMirror
from tests.support.events import model_trained
from tests.support.packages import make_package
from tests.support.processes import TOKEN


def a_registry(tmp_path: Path, name: str, announced: AnnouncedVersions) -> Registry:
    settings = Settings(
        db_url=f"sqlite:///{tmp_path / f'{name}.db'}",
        packages_dir=tmp_path / f"packages-{name}",
        artifact_roots=[str(tmp_path)],
        api_token=TOKEN,
    )
    return bootstrap(settings, mirror=NoMirror(), announced=announced)


def register(registry: Registry, event: t.ModelTrained) -> list[Any]:
    args = (registry.store, registry.vault, registry.mirror, registry.producer)
    return register_trained_model(event, *args, registry.announced)


def trained(tmp_path: Path, seed: int) -> t.ModelTrained:
    directory = tmp_path / "trained" / str(seed)
    return model_trained("credit", str(directory), make_package(directory, "credit", seed=seed))


def test_a_registry_with_an_empty_database_adopts_the_log_and_numbers_above_it(
    tmp_path: Path,
) -> None:
    log = AnnouncedVersions()  # one log, two registries with databases of their own
    first = a_registry(tmp_path, "first", log)
    events = [trained(tmp_path, seed) for seed in (1, 2, 3)]
    for event in events[:2]:
        log.record(event)
        for answer in register(first, event):
            log.record(answer)

    second = a_registry(tmp_path, "second", log)
    log.record(events[2])
    [third] = register(second, events[2])

    assert isinstance(third, t.ModelRegistered)
    assert (third.version, third.parent_version) == (3, 2)
    held = second.store.versions("credit")
    assert [(row.version, row.trained_event_id) for row in held] == [
        (1, events[0].meta.event_id),
        (2, events[1].meta.event_id),
        (3, events[2].meta.event_id),
    ]
    # The adopted rows keep the very announcement the first registry made.
    assert [row.producer for row in held[:2]] == [first.producer] * 2
    assert held[2].producer == second.producer


def test_a_version_announced_without_its_cause_still_takes_its_number(tmp_path: Path) -> None:
    log = AnnouncedVersions()
    other = a_registry(tmp_path, "other", AnnouncedVersions())
    [announced] = register(other, trained(tmp_path, 1))
    log.record(announced)  # its ModelTrained was never seen: the row cannot be adopted
    registry = a_registry(tmp_path, "behind", log)

    [answer] = register(registry, trained(tmp_path, 2))

    assert isinstance(answer, t.ModelRegistered)
    assert answer.version == 2
    assert [row.version for row in registry.store.versions("credit")] == [2]
