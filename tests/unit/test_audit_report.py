"""The HTML audit report renders in a real headless browser with versions and decisions on it.

Needs Chromium (Debian's `chromium`); skipped without it, unless MODELBUS_TEST_REQUIRE_BROWSER
is set (CI sets it, so there a missing browser fails instead of skipping).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from modelbus.audit import audit
from modelbus.cli.report import as_html, as_json
from modelbus.events import example_event, new_meta
from modelbus.events import types as t

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")


def _event(cls: type, producer: str, cause: Any = None, **fields: Any) -> Any:
    return dataclasses.replace(
        example_event(cls), meta=new_meta(producer, cause=cause), model="credit", **fields
    )


def _log() -> list[Any]:
    drift = _event(t.DriftDetected, "monitor@h:1", kind="concept")
    trained = _event(t.ModelTrained, "trainer@h:2", drift)
    registered = _event(t.ModelRegistered, "registry@h:3", trained, version=1, parent_version=None)
    routes = [t.Route(variant="champion", version=1, weight_pct=100.0)]
    shifted = _event(t.TrafficShifted, "deployer@h:4", registered, routes=routes, reason="first")
    promoted = _event(t.ModelPromoted, "deployer@h:4", shifted, version=1, reason="first version")
    return [drift, trained, registered, shifted, promoted]


def test_the_json_report_traces_each_decision_to_the_drift() -> None:
    data = as_json(audit(_log()))
    assert data["ok"] is True
    assert [row["version"] for row in data["versions"]] == [1]
    assert data["versions"][0]["outcome"] == "promoted"
    assert {d["root_cause"].split()[0] for d in data["decisions"]} == {"DriftDetected"}
    json.dumps(data)


def test_the_html_report_renders_its_timeline_in_a_headless_browser(tmp_path: Path) -> None:
    if BROWSER is None:
        if os.environ.get("MODELBUS_TEST_REQUIRE_BROWSER"):
            pytest.fail("MODELBUS_TEST_REQUIRE_BROWSER is set but no chromium is installed")
        pytest.skip("no chromium on this machine (apt-get install chromium)")
    page = tmp_path / "audit.html"
    page.write_text(as_html(audit(_log())))
    rendered = subprocess.run(
        [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert 'data-drawn="5"' in rendered  # the script drew every event
    assert rendered.count('class="event ') == 5
    assert "consistent and whole" in rendered
    assert "<td>credit</td><td>1</td>" in rendered
    assert "ModelPromoted" in rendered
    assert "DriftDetected" in rendered
