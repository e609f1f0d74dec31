"""schemas/ is the single source of truth: generated classes, docs and shape follow it."""

from __future__ import annotations

import json
import subprocess
import sys

from modelbus.events import event_schemas, find_schema_dir
from modelbus.events.meta import DATA_PLANE_EVENTS, LIFECYCLE_EVENTS

DESIGN_EVENTS = {
    "TrainingRequested", "TrainingStarted", "TrainingFailed", "ModelTrained", "ModelRegistered",
    "RolloutStarted", "TrafficShifted", "CanaryEvaluated", "ModelPromoted", "ModelRolledBack",
    "RollbackRequested", "PromotionRequested", "ModelLoaded", "ModelLoadFailed", "DriftDetected",
    "PredictionRequest", "PredictionResult", "Feedback", "DeadLetter", "ModelHealth",
}  # fmt: skip


def test_generated_classes_match_the_schemas() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "modelbus.events.codegen", "--check"], capture_output=True
    )
    assert result.returncode == 0, "events/types.py is stale: run `make codegen`"


def test_every_event_named_in_the_design_has_a_schema_and_meta() -> None:
    names = {cls.__name__ for cls in LIFECYCLE_EVENTS + DATA_PLANE_EVENTS}
    assert names >= DESIGN_EVENTS
    for cls in LIFECYCLE_EVENTS + DATA_PLANE_EVENTS:
        fields = event_schemas()[cls.SCHEMA_NAME]["fields"]
        assert fields[0]["name"] == "meta", cls.__name__


def test_lifecycle_events_name_their_model() -> None:
    for cls in LIFECYCLE_EVENTS:
        names = [spec["name"] for spec in event_schemas()[cls.SCHEMA_NAME]["fields"]]
        assert names[1] == "model", cls.__name__


def test_every_field_of_every_schema_has_a_doc() -> None:
    paths = sorted(find_schema_dir().glob("*.avsc")) + sorted(
        (find_schema_dir() / "models").glob("*.avsc")
    )
    assert len(paths) >= 30
    for path in paths:
        schema = json.loads(path.read_text())
        expected_name = (
            f"{schema['namespace'].rpartition('.')[2]}.avsc"
            if path.parent.name == "models"
            else f"{schema['namespace']}.{schema['name']}.avsc"
        )
        assert path.name == expected_name, "one named record per file, named after it"
        assert schema.get("doc"), path.name
        for spec in schema["fields"]:
            assert spec.get("doc"), f"{path.name}: {spec['name']} has no doc"


def test_optional_fields_default_to_null_so_old_readers_and_writers_interoperate() -> None:
    for name, schema in event_schemas().items():
        for spec in schema["fields"]:
            if isinstance(spec["type"], list) and "null" in spec["type"]:
                assert spec.get("default", "missing") is None, f"{name}.{spec['name']}"
