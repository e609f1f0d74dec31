"""Every deployer decision on the log re-derived by the deployer's own pure fold.

``verify(lifecycle, health)`` replays a fresh ``Deployer`` over ``modelbus.lifecycle`` (in log
order) merged with the ``ModelHealth`` windows of ``modelbus.health`` (each window fed before
the first lifecycle event that happened after it was published, by ``occurred_at``). Each
trigger (registration, load failure, operator request, health window) is decided with the
policy its ``RolloutStarted`` recorded, and each logged decision (``RolloutStarted``,
``TrafficShifted``, ``CanaryEvaluated``, ``ModelPromoted``, ``ModelRolledBack``) is matched to
what the fold decided by id (uuid5 of its cause, see ``decision_id``) and contents. Findings:

- ``not-made``: a logged decision the fold did not make (a forged or misplaced event);
- ``altered``: a logged decision with a decided id whose contents differ (verdict, guardrail
  figures, routes, reasons...), the differing fields named;
- ``missing``: a decision the fold made that never reached the log.

Limits, stated plainly: ``occurred_at`` and ``producer`` are not compared (the time a decision
was made and the instance that made it cannot be re-derived; a trigger is decided at the time
the log says its decision was made, else at its own time). Timer decisions (a rollout paused
for want of health) are checked only when logged: the fold's ``tick`` is run at the logged
time, or ``TIMER_SLACK`` later (a live pause was seen logged 0.125 s before the timeout
measured from the logged step start; such a pause is matched by id, its silence figure in the
reason not compared); a pause that should have happened but was never logged cannot be seen.
Windows are merged by publication time, so a window the deployer read out of that order (a
race within milliseconds of a step change) may be reported. A decision still owed when the log
ends (the deployer lagging or stopped) is reported missing. The fold does not follow forged
events, so one bad event is one finding, not a cascade.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field, fields, replace
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from modelbus.events import types as t
from modelbus_deployer.domain import Deployer, decision_id

if TYPE_CHECKING:
    from modelbus.config import KafkaSettings

DECISIONS = (t.RolloutStarted, t.TrafficShifted, t.CanaryEvaluated, t.ModelPromoted,
             t.ModelRolledBack)  # fmt: skip
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TIMER_SLACK = timedelta(seconds=1)
"""A logged pause is accepted up to this long before the fold's timer would have fired."""


@dataclass(frozen=True)
class Finding:
    """One decision that does not match the fold."""

    kind: str
    event_type: str
    event_id: str
    model: str
    detail: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.event_type} {self.event_id} ({self.model}): {self.detail}"


@dataclass
class Verification:
    """What was checked and what did not match."""

    decisions: int = 0
    matched: int = 0
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.findings


def _normal(event: Any) -> Any:
    """The event without what cannot be re-derived (when, and which instance)."""
    return replace(event, meta=replace(event.meta, occurred_at=_EPOCH, producer=""))


def differences(logged: Any, made: Any) -> list[str]:
    """Names of the fields where two decisions differ (NaN equals NaN)."""
    a, b = _normal(logged), _normal(made)
    return [f.name for f in fields(a) if repr(getattr(a, f.name)) != repr(getattr(b, f.name))]


def verify(
    lifecycle: Iterable[Any], health: Iterable[t.ModelHealth], *, model: str | None = None
) -> Verification:
    """Replay the fold over the log and compare every decision with the one logged."""
    log = [e for e in lifecycle if model is None or getattr(e, "model", None) == model]
    windows = sorted((w for w in health if model is None or w.model == model),
                     key=lambda w: w.meta.occurred_at)  # fmt: skip
    decided_at: dict[str, datetime] = {}
    policies: dict[str, t.RolloutPolicy] = {}
    for event in log:
        if isinstance(event, DECISIONS):
            decided_at[event.meta.event_id] = event.meta.occurred_at
            if event.meta.causation_id is not None:
                decided_at.setdefault(event.meta.causation_id, event.meta.occurred_at)
        if isinstance(event, t.RolloutStarted) and event.policy is not None:
            policies[event.meta.causation_id or ""] = event.policy
    first = next((e for e in log if isinstance(e, DECISIONS)), None)
    deployer = Deployer(
        producer=first.meta.producer if first else "deployer",
        policy=next(iter(policies.values()), t.RolloutPolicy(steps_pct=[5.0, 25.0, 50.0, 100.0])),
    )
    expected: dict[str, Any] = {}
    result = Verification()
    fed = 0
    for event in log:
        while fed < len(windows) and windows[fed].meta.occurred_at <= event.meta.occurred_at:
            _feed_window(deployer, windows[fed], decided_at, expected)
            fed += 1
        if not isinstance(event, DECISIONS):
            deployer.policy = policies.get(event.meta.event_id, deployer.policy)
            now = decided_at.get(event.meta.event_id, event.meta.occurred_at)
            for made in deployer.decide(event, now=now):
                expected[made.meta.event_id] = made
            continue
        result.decisions += 1
        deployer = _check(deployer, event, expected, result)
    for window in windows[fed:]:
        _feed_window(deployer, window, decided_at, expected)
    for made in expected.values():
        lacks = "the fold decided it; the log lacks it"
        result.findings.append(
            Finding("missing", type(made).__name__, made.meta.event_id, made.model, lacks)
        )
    return result


def _feed_window(deployer: Deployer, window: t.ModelHealth, decided_at: dict[str, datetime],
                 expected: dict[str, Any]) -> None:  # fmt: skip
    """Decide on a window at the time its judgement was logged (else its own time)."""
    now = window.meta.occurred_at
    rollout = deployer.state(window.model).rollout
    if rollout is not None:
        ms = int(window.window_start.timestamp() * 1000)
        judged = decision_id(f"{rollout.step_cause}/window-{ms}", "evaluated")
        now = decided_at.get(judged, now)
    for made in deployer.decide(window, now=now):
        expected[made.meta.event_id] = made


def _check(deployer: Deployer, logged: Any, expected: dict[str, Any],
           result: Verification) -> Deployer:  # fmt: skip
    """Match one logged decision; returns the fold to go on with."""
    event_id, name = logged.meta.event_id, type(logged).__name__
    if event_id not in expected and isinstance(logged, t.CanaryEvaluated):
        for late in (timedelta(0), TIMER_SLACK):  # a timer's pause: what tick says then
            trial = copy.deepcopy(deployer)
            paused = trial.tick(logged.model, now=logged.meta.occurred_at + late)
            if any(p.meta.event_id == event_id for p in paused):
                deployer = trial
                for pause in paused:
                    # ticked later than logged, the silence in the reason reads longer
                    expected[pause.meta.event_id] = (
                        replace(pause, reasons=logged.reasons) if late else pause
                    )
                break
    made = expected.pop(event_id, None)
    if made is None:
        if event_id in deployer.folded:
            result.matched += 1  # a redelivery of a decision already matched
        else:
            result.findings.append(Finding("not-made", name, event_id, logged.model,
                                           "the fold made no such decision here"))  # fmt: skip
        return deployer
    differ = differences(logged, made)
    if differ:
        detail = "; ".join(f"{f}: logged {getattr(logged, f)!r}, fold {getattr(made, f)!r}"
                           for f in differ)  # fmt: skip
        result.findings.append(Finding("altered", name, event_id, logged.model, detail))
    else:
        result.matched += 1
    return deployer


def read_and_verify(kafka: KafkaSettings, *, model: str | None = None) -> Verification:
    """Read both logs to their ends (read-only) and verify; undecodable events are skipped, and
    so are triggers not signed by their owner (the deployer never acted on them). A decision
    is kept whoever signed it: a forged one is then reported as not made."""
    from modelbus.bus import LIFECYCLE_TOPIC
    from modelbus.bus.reading import read_topic
    from modelbus.bus.schema_topic import kafka_schema_store
    from modelbus.bus.topics import HEALTH_TOPIC
    from modelbus.events import CodecError, GenericRecord, build_codec
    from modelbus.trust import check_event, load_trusted
    from modelbus_deployer.handlers import SIGNERS

    codec = build_codec(kafka_schema_store(kafka.bootstrap_servers), models=tuple(kafka.models))
    trusted = load_trusted(required=SIGNERS)

    def events(topic: str) -> list[Any]:
        kept = []
        for envelope in read_topic(kafka.bootstrap_servers, topic, purpose="deployer-verify"):
            value = envelope.value or b""
            try:
                event = codec.decode(value, where=envelope.where)
            except CodecError:
                continue
            if isinstance(event, GenericRecord):
                continue
            name, headers = event.SCHEMA_NAME, envelope.headers
            signed = check_event(name, topic, value, headers, trusted) is None
            if signed or isinstance(event, DECISIONS):
                kept.append(event)
        return kept

    lifecycle = events(LIFECYCLE_TOPIC)
    health = [w for w in events(HEALTH_TOPIC) if isinstance(w, t.ModelHealth)]
    return verify(lifecycle, health, model=model)
