"""The audit as JSON and as one self-contained HTML page with the timeline drawn (no I/O).

The page needs nothing but a browser: styles and the drawing script are inline, the events are
embedded as JSON, and the script draws one lane per service role on an SVG time axis.
"""

from __future__ import annotations

import html
import json
from datetime import datetime
from typing import Any

from modelbus.audit import AuditReport
from modelbus.events import types as t

LANES = ("operator", "monitor", "trainer", "registry", "deployer", "inference")


def _lane(producer: str) -> str:
    role = producer.split("@", 1)[0].split("-", 1)[0]
    return role if role in LANES else "operator"


def _versions(events: list[Any]) -> list[dict[str, Any]]:
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    trained = {e.meta.event_id: e for e in events if isinstance(e, t.ModelTrained)}
    for event in events:
        if isinstance(event, t.ModelRegistered):
            cause = trained.get(event.meta.causation_id or "")
            rows[(event.model, event.version)] = {
                "model": event.model,
                "version": event.version,
                "registered_at": event.meta.occurred_at.isoformat(),
                "parent": event.parent_version,
                "run": event.run_id,
                "sha256": event.artifact_sha256,
                "rows": cause.data.rows if cause else None,
                "code": f"{cause.code.git_sha[:10]}{'+dirty' if cause.code.dirty else ''}"
                if cause
                else None,
                "params": dict(cause.params) if cause else {},
                "python": cause.environment.python if cause else None,
                "outcome": "registered",
            }
        elif isinstance(event, t.ModelPromoted) and (event.model, event.version) in rows:
            rows[(event.model, event.version)]["outcome"] = "promoted"
        elif isinstance(event, t.ModelRolledBack) and (event.model, event.version) in rows:
            rows[(event.model, event.version)]["outcome"] = f"rolled back: {event.reason}"
    return list(rows.values())


def as_json(report: AuditReport) -> dict[str, Any]:
    """Everything the audit found, as plain data."""
    from modelbus.cli.render import one_line

    by_id = {event.meta.event_id: event for event in report.events}
    decisions = [
        {
            "event_id": event_id,
            "decision": one_line(by_id[event_id]),
            "root_cause": f"{type(root).__name__} {root.meta.event_id} by {root.meta.producer}",
        }
        for event_id, root in report.causes.items()
    ]
    return {
        "ok": report.ok,
        "events": len(report.events),
        "redeliveries": report.redeliveries,
        "versions": _versions(report.events),
        "decisions": decisions,
        "problems": report.problems,
    }


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def as_html(report: AuditReport, *, title: str = "modelbus audit") -> str:
    """A self-contained page: status, problems, versions with lineage, decisions, timeline."""
    from rich.text import Text

    from modelbus.cli.render import one_line

    data = as_json(report)
    points = [
        {
            "t": event.meta.occurred_at.timestamp() * 1000,
            "lane": _lane(event.meta.producer),
            "kind": type(event).__name__,
            "label": Text.from_markup(one_line(event)).plain,
        }
        for event in report.events
        if not isinstance(event, t.ModelHealth)
    ]
    status = "consistent and whole" if report.ok else f"{len(report.problems)} problem(s)"
    problems = "".join(f"<li>{html.escape(p)}</li>" for p in report.problems) or "<li>none</li>"
    columns = ("model", "version", "registered_at", "parent", "run", "rows", "code", "python")
    versions = "".join(
        "<tr>"
        + "".join(f"<td>{html.escape(str(row[key]))}</td>" for key in (*columns, "outcome"))
        + "</tr>"
        for row in data["versions"]
    )
    decisions = "".join(
        f"<tr><td>{html.escape(d['decision'])}</td><td>{html.escape(d['root_cause'])}</td></tr>"
        for d in data["decisions"]
    )
    embedded = json.dumps({"lanes": LANES, "points": points}, default=_plain).replace("</", "<\\/")
    return _PAGE.format(
        title=html.escape(title),
        status=html.escape(status),
        state="ok" if report.ok else "failed",
        count=len(report.events),
        problems=problems,
        versions=versions,
        decisions=decisions,
        data=embedded,
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font: 14px system-ui, sans-serif; margin: 2em; color: #222; }}
h1 .ok {{ color: #17803d; }} h1 .failed {{ color: #b91c1c; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
td, th {{ border: 1px solid #ddd; padding: 4px 8px; text-align: left; }}
#timeline text {{ font-size: 11px; }}
</style></head>
<body>
<h1>{title}: <span class="{state}" id="status">{status}</span></h1>
<p>{count} lifecycle events.</p>
<h2>Problems</h2><ul id="problems">{problems}</ul>
<h2>Versions and lineage</h2>
<table id="versions"><tr><th>model</th><th>version</th><th>registered</th><th>parent</th>
<th>run</th><th>rows</th><th>code</th><th>python</th><th>outcome</th></tr>{versions}</table>
<h2>Traffic decisions and what caused them</h2>
<table id="decisions"><tr><th>decision</th><th>root cause</th></tr>{decisions}</table>
<h2>Timeline</h2>
<svg id="timeline" width="1200" height="260" role="img" aria-label="lifecycle timeline"></svg>
<script id="audit-data" type="application/json">{data}</script>
<script>
(function () {{
  const data = JSON.parse(document.getElementById("audit-data").textContent);
  const svg = document.getElementById("timeline");
  const ns = "http://www.w3.org/2000/svg";
  const times = data.points.map(p => p.t);
  const start = Math.min(...times), end = Math.max(...times, start + 1);
  const x = t => 120 + (t - start) / (end - start) * 1060;
  data.lanes.forEach((lane, i) => {{
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", 4); label.setAttribute("y", 30 + i * 38);
    label.textContent = lane; svg.appendChild(label);
  }});
  data.points.forEach(p => {{
    const dot = document.createElementNS(ns, "circle");
    dot.setAttribute("cx", x(p.t)); dot.setAttribute("cy", 26 + data.lanes.indexOf(p.lane) * 38);
    dot.setAttribute("r", 5); dot.setAttribute("class", "event " + p.kind);
    const tip = document.createElementNS(ns, "title"); tip.textContent = p.label;
    dot.appendChild(tip); svg.appendChild(dot);
  }});
  svg.setAttribute("data-drawn", data.points.length);
}})();
</script>
</body></html>
"""
