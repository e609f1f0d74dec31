"""``modelbus audit`` and ``modelbus replay``: the log verified, answers reproduced."""

from __future__ import annotations

import json
import random
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from modelbus.bus import LIFECYCLE_TOPIC
from modelbus.bus.reading import read_topic
from modelbus.cli.context import cli_codec, cli_settings
from modelbus.cli.render import one_line
from modelbus.events import GenericRecord
from modelbus.trust import check_event, load_trusted

audit_app = typer.Typer(
    help="Verify the lifecycle log, or reproduce answered predictions from registered versions."
)
console = Console()


@audit_app.callback(invoke_without_command=True)
def audit_command(
    context: typer.Context,
    model: Annotated[str | None, typer.Option(help="Only this model.")] = None,
    topic: Annotated[
        str, typer.Option(help="Lifecycle topic to audit (e.g. a copy of the log).")
    ] = LIFECYCLE_TOPIC,
    artifacts: Annotated[
        bool, typer.Option(help="Check each registered package's files against its sha256.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    html: Annotated[
        Path | None, typer.Option(help="Also write a self-contained HTML report here.")
    ] = None,
) -> None:
    """Replay the lifecycle log into a verified timeline; exit 1 naming every problem found:
    an event removed or altered, a broken causation chain, versions out of order, a package
    whose files no longer match what was registered, a decision not signed by its role
    (left out of the timeline: no service acted on it)."""
    from modelbus.audit import audit, tampered_artifacts
    from modelbus.bus.chain import Link
    from modelbus.cli.report import as_html
    from modelbus.cli.report import as_json as report_json

    if context.invoked_subcommand is not None:
        return
    settings = cli_settings()
    codec = cli_codec(settings)
    trusted = load_trusted()
    events, links, unsigned = [], [], []
    for envelope in read_topic(settings.bootstrap_servers, topic):
        if model is not None and envelope.key != model.encode():
            continue
        links.append(Link(envelope.where, envelope.key or b"", envelope.value or b"",
                          envelope.headers))  # fmt: skip
        event = codec.decode(envelope.value or b"", where=envelope.where)
        if isinstance(event, GenericRecord):
            continue
        # Signed for the lifecycle topic: a copy of the log is checked as the original.
        value, headers = envelope.value or b"", envelope.headers
        refused = check_event(event.SCHEMA_NAME, LIFECYCLE_TOPIC, value, headers, trusted)
        if refused is not None:
            unsigned.append(f"{envelope.where}: {refused.error_type}: {refused.reason}")
            continue
        events.append(event)
    report = audit(events, links=links)
    report.problems += unsigned
    if artifacts:
        report.problems += tampered_artifacts(events)
    if html is not None:
        html.write_text(as_html(report, title=f"modelbus audit of {topic}"))
    if as_json:
        print(json.dumps(report_json(report), indent=2, default=str))
        if not report.ok:
            raise typer.Exit(1)
        return
    for correlation_id, chain in report.chains.items():
        table = Table(title=f"loop {correlation_id}", show_lines=False)
        for column in ("time", "event", "detail"):
            table.add_column(column)
        for event in chain:
            table.add_row(str(event.meta.occurred_at), type(event).__name__, one_line(event))
        console.print(table)
    for model_name, versions in report.versions.items():
        console.print(f"{model_name}: versions {versions}")
    console.print(
        "[dim]the deployer's decisions are re-derived from the logged health windows by "
        "`python -m modelbus_deployer verify` (the deployer's own fold; not run here)[/dim]"
    )
    if report.ok:
        console.print(
            f"[green]{len(events)} events ({report.redeliveries} redelivered), "
            "log consistent and whole[/green]"
        )
        return
    for problem in report.problems:
        console.print(f"[red]{escape(problem)}[/red]")
    raise typer.Exit(1)


@audit_app.command("prediction")
def audit_prediction(
    request_ids: Annotated[list[str], typer.Argument(help="Request id(s) to reproduce.")],
    model: Annotated[str, typer.Option(help="Model the requests were sent to.")] = "credit",
) -> None:
    """Find each request and its committed result, load exactly the version that answered
    (sha256 checked), recompute, and show that the scores match bit for bit, with lineage."""
    _reproduce(model, request_ids=set(request_ids), sample=None, seed=0, verbose=True)


@audit_app.command("predictions")
def audit_predictions(
    model: Annotated[str, typer.Option(help="Model whose answers to reproduce.")] = "credit",
    sample: Annotated[
        int, typer.Option(help="How many answered requests, chosen at random.")
    ] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the random choice.")] = 0,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the counts per version as JSON.")
    ] = False,
) -> None:
    """Reproduce a random sample of answered requests; exit 1 if any score differs. Each
    version is loaded once and scores its share of the sample in one batch."""
    _reproduce(model, request_ids=None, sample=sample, seed=seed, verbose=False, as_json=as_json)


def _reproduce(
    model: str, *, request_ids: set[str] | None, sample: int | None, seed: int, verbose: bool,
    as_json: bool = False,
) -> None:  # fmt: skip
    from modelbus.cli.replay import (
        compare_scores,
        load_version,
        read_answered,
        registrations,
        rescore,
    )

    started = time.perf_counter()
    settings = cli_settings()
    codec = cli_codec(settings)
    answered = read_answered(settings.bootstrap_servers, codec, model, request_ids=request_ids)
    read_s = time.perf_counter() - started
    summary: dict[str, Any] = {"model": model, "answered": 0, "sampled": 0, "compared": 0,
                               "identical": 0, "versions": {}}  # fmt: skip
    missing = sorted((request_ids or set()) - set(answered))
    if missing:
        console.print(f"[red]no request {missing[:5]} in {model}'s requests topic[/red]")
        raise typer.Exit(1)
    with_results = sorted(rid for rid, a in answered.items() if a.result is not None)
    summary["answered"] = len(with_results)
    if sample is not None:
        with_results = sorted(
            random.Random(seed).sample(with_results, min(sample, len(with_results)))
        )
    summary["sampled"] = len(with_results)
    versions = registrations(settings.bootstrap_servers, codec, model)
    failed = False
    by_version: dict[int, list[str]] = {}
    for rid in with_results:
        by_version.setdefault(answered[rid].result.version, []).append(rid)  # type: ignore[union-attr]
    for version, ids in sorted(by_version.items()):
        registration = versions.get(version)
        if registration is None:
            summary["versions"][str(version)] = {"requests": len(ids), "registered": False}
            console.print(
                f"[red]v{version} answered {len(ids)} requests but was never registered[/red]"
            )
            failed = True
            continue
        loaded = load_version(registration)
        rows = [dict(answered[rid].request.features) for rid in ids]
        scores = rescore(loaded, rows)
        committed = [list(answered[rid].result.scores) for rid in ids]  # type: ignore[union-attr]
        outcome = compare_scores(ids, committed, scores)
        summary["compared"] += outcome.compared
        summary["identical"] += outcome.identical
        summary["versions"][str(version)] = {
            "requests": len(ids), "identical": outcome.identical,
            "max_abs_diff": outcome.max_abs_diff, "differing": list(outcome.differing[:10]),
        }  # fmt: skip
        verdict = "[green]identical[/green]" if outcome.exact else "[red]DIFFERENT[/red]"
        where = f"{registration.artifact_uri}, sha256 {registration.artifact_sha256[:12]}"
        if not as_json:
            console.print(
                f"v{version} ({where}): {outcome.identical}/{outcome.compared} {verdict}, "
                f"max |diff| {outcome.max_abs_diff:.3g}"
            )
        if verbose:
            for rid, recomputed in zip(ids, scores, strict=True):
                result = answered[rid].result
                console.print(
                    f"  {rid}: answered {list(result.scores)} by v{version} {result.variant}; "  # type: ignore[union-attr]
                    f"recomputed {[float(x) for x in recomputed]}"
                )
            console.print(
                f"  lineage: run {registration.run_id}, parent v{registration.parent_version}, "
                f"metrics {registration.metrics}"
            )
        failed = failed or not outcome.exact
    unanswered = (request_ids or set()) - set(with_results)
    if unanswered:
        console.print(f"[red]no committed result for {sorted(unanswered)[:5]}[/red]")
        failed = True
    summary["read_s"] = round(read_s, 3)
    summary["rescore_s"] = round(time.perf_counter() - started - read_s, 3)
    summary["ok"] = not failed
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        console.print(
            f"{summary['identical']}/{summary['sampled']} answers reproduced bit for bit "
            f"(log read in {summary['read_s']:.1f}s, versions loaded and rescored in "
            f"{summary['rescore_s']:.1f}s)"
        )
    if failed:
        raise typer.Exit(1)


def replay(
    version: Annotated[int, typer.Argument(help="Registered version to ask.")],
    model: Annotated[str, typer.Option(help="Model whose requests to re-score.")] = "credit",
    since: Annotated[
        str | None, typer.Option(help="From this send time: ISO 8601 or an age like 2h, 7d.")
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="Until this send time (exclusive), same forms.")
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Write one JSON line per request here.")] = None,
) -> None:
    """What would version V have said? Re-score past requests (read-only) and compare with what
    was answered then: agreement, and accuracy of both where labels arrived."""
    from modelbus.cli.replay import load_version, read_answered, registrations, rescore, summarise
    from modelbus.cli.tail import parse_since

    now = datetime.now(UTC)
    try:
        start = parse_since(since, now=now) if since else None
        end = parse_since(until, now=now) if until else None
    except ValueError as error:
        raise typer.BadParameter(str(error)) from error
    settings = cli_settings()
    codec = cli_codec(settings)
    registration = registrations(settings.bootstrap_servers, codec, model).get(version)
    if registration is None:
        raise typer.BadParameter(f"{model} has no registered version {version}")
    answered = list(
        read_answered(settings.bootstrap_servers, codec, model, since=start, until=end).values()
    )
    if not answered:
        console.print(f"no {model} requests in that range")
        raise typer.Exit(1)
    scores = rescore(load_version(registration), [dict(a.request.features) for a in answered])
    labels = scores.argmax(axis=1)
    summary = summarise(version, answered, labels)
    if out is not None:
        with out.open("w") as handle:
            for item, label, row_scores in zip(answered, labels, scores, strict=True):
                then = item.result
                handle.write(json.dumps({
                    "request_id": item.request.request_id,
                    "sent_at": item.request.sent_at.isoformat(),
                    "answered_by": then.version if then else None,
                    "answered_label": then.label if then else None,
                    f"v{version}_label": int(label),
                    f"v{version}_scores": [float(x) for x in row_scores],
                    "true_label": item.label,
                }) + "\n")  # fmt: skip
    table = Table(title=f"{model}: v{version} replayed on {summary.requests} requests")
    table.add_column("figure")
    table.add_column("value")
    table.add_row("answered then", str(summary.answered_then))
    table.add_row(f"v{version} agrees with the answer given", _pct(summary.agreement))
    table.add_row("labelled", str(summary.labelled))
    table.add_row("accuracy of the answers given", _pct(summary.accuracy_then))
    table.add_row(f"accuracy v{version} would have had", _pct(summary.accuracy_replayed))
    console.print(table)
    if out is not None:
        console.print(f"[dim]{summary.requests} lines in {out}[/dim]")


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"
