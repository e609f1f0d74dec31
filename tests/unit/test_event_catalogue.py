"""The producers/consumers table is generated from the code, and the README shows that table."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelbus.catalogue import (
    END,
    START,
    Row,
    catalogue,
    components,
    markdown,
    scan,
    section,
    with_section,
)
from tests.support.files import write_tree

REPO = Path(__file__).resolve().parents[2]

NO_PRODUCER_YET: dict[str, str] = {}
"""Lifecycle events nobody emits today; each entry leaves when its producer lands."""

NO_CONSUMER = {
    "RegistrationFailed": "read by audits and `events tail`: no service acts on it",
    "ModelLoaded": "read by audits and `events tail`: no service acts on it",
}
"""Lifecycle events no service consumes, and why."""


def _lifecycle(rows: list[Row]) -> list[Row]:
    return [row for row in rows if row.log == "lifecycle"]


def test_the_readme_shows_the_table_the_code_gives() -> None:
    readme = (REPO / "README.md").read_text()
    assert section(readme) == markdown(catalogue(REPO)), (
        "README's event table is stale: run `python -m modelbus.catalogue --write README.md`"
    )


def test_every_lifecycle_event_has_a_producer_except_the_ones_still_to_come() -> None:
    missing = {row.event for row in _lifecycle(catalogue(REPO)) if not row.producers}
    assert missing == set(NO_PRODUCER_YET), "a producer landed or left: update NO_PRODUCER_YET"


def test_the_lifecycle_events_nobody_consumes_are_the_known_ones() -> None:
    unconsumed = {row.event for row in _lifecycle(catalogue(REPO)) if not row.consumers}
    assert unconsumed == set(NO_CONSUMER), "a consumer landed or left: update NO_CONSUMER"


SOURCES = {
    "services/alpha/src/modelbus_alpha/handlers.py": """
from modelbus.events import types as t
from modelbus.events.types import ModelLoaded

EVENT_HANDLERS: dict = {t.ModelTrained: [print], t.DriftDetected: [print]}


def handle(event):
    return [t.ModelRegistered(meta=None), ModelLoaded(meta=None), t.EventMeta(event_id="x")]
""",
    "services/alpha/src/modelbus_alpha/stream.py": """
from modelbus.events import types as t

CONSUMES = (t.PredictionRequest,)
PRODUCES = (t.PredictionResult, t.DeadLetter)
""",
    "services/beta/src/modelbus_beta/__main__.py": """
from modelbus.events import types as t

request = t.TrainingRequested(model="m")
""",
    "libs/modelbus/src/modelbus/cli/main.py": "from modelbus.events import types as t\n"
    "t.RollbackRequested(model='m')\n",
    "libs/modelbus/src/modelbus/bus/dispatch.py": "",
}


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    return write_tree(tmp_path, SOURCES)


def test_handler_keys_and_declared_tuples_are_consumed_and_constructors_produced(
    tree: Path,
) -> None:
    assert list(components(tree)) == ["alpha", "beta", "cli", "bus"]
    assert scan(tree / "services" / "alpha" / "src" / "modelbus_alpha") == (
        {"ModelRegistered", "ModelLoaded", "PredictionResult", "DeadLetter"},
        {"ModelTrained", "DriftDetected", "PredictionRequest"},
    )
    rows = {row.event: row for row in catalogue(tree)}
    assert rows["TrainingRequested"] == Row("TrainingRequested", "lifecycle", ("beta",), ())
    assert rows["RollbackRequested"] == Row("RollbackRequested", "lifecycle", ("cli",), ())
    assert rows["ModelTrained"] == Row("ModelTrained", "lifecycle", (), ("alpha",))
    assert rows["PredictionRequest"] == Row("PredictionRequest", "data plane", (), ("alpha",))


def test_writing_the_table_replaces_only_what_is_between_the_markers() -> None:
    document = f"# Title\n\nbefore\n{START}\nold table\n{END}\nafter\n"
    table = markdown([Row("ModelTrained", "lifecycle", ("trainer",), ("registry", "trainer"))])

    written = with_section(document, table)

    assert written == (
        f"# Title\n\nbefore\n{START}\n"
        "| event | log | produced by | consumed by |\n"
        "| --- | --- | --- | --- |\n"
        "| `ModelTrained` | lifecycle | trainer | registry, trainer |\n"
        f"{END}\nafter\n"
    )
    assert section(written) == table


def test_a_document_without_the_markers_is_refused() -> None:
    with pytest.raises(ValueError, match="event-table"):
        with_section("# no table here\n", "| a |")


def test_docs_events_md_is_the_catalogue_the_schemas_give() -> None:
    from modelbus.schema_docs import document

    checked_in = (REPO / "docs" / "events.md").read_text()
    assert checked_in == document(REPO / "schemas"), (
        "docs/events.md is stale: run `python -m modelbus.schema_docs --write docs/events.md`"
    )


def test_the_event_catalogue_has_a_section_for_every_schema_and_a_row_for_every_field() -> None:
    import json

    from modelbus.schema_docs import document

    text = document(REPO / "schemas")
    for path in sorted((REPO / "schemas").glob("modelbus.events.*.avsc")):
        schema = json.loads(path.read_text())
        assert f"\n### {schema['name']}\n" in text
        body = text.split(f"\n### {schema['name']}\n", 1)[1].split("\n### ", 1)[0]
        assert [line.split("`")[1] for line in body.splitlines() if line.startswith("| `")] == [
            field["name"] for field in schema["fields"]
        ]


def test_a_field_shows_its_avro_type_default_and_doc(tmp_path: Path) -> None:
    from modelbus.schema_docs import document

    (tmp_path / "modelbus.events.ModelHealth.avsc").write_text(
        '{"type": "record", "name": "ModelHealth", "namespace": "modelbus.events", '
        '"doc": "Health.", "fields": [{"name": "accuracy", "type": ["null", "double"], '
        '"default": null, "doc": "Share right | or null."}, {"name": "at", "type": '
        '{"type": "long", "logicalType": "timestamp-millis"}, "doc": "When."}]}'
    )
    assert document(tmp_path).split("## Data-plane events\n\n", 1)[1].split("\n## ")[0] == (
        "### ModelHealth\n\nLog: `modelbus.health`, keyed by model.\n\nHealth.\n\n"
        "| field | type | default | doc |\n| --- | --- | --- | --- |\n"
        "| `accuracy` | null or double | `null` | Share right \\| or null. |\n"
        "| `at` | long (timestamp-millis) | required | When. |\n"
    )
