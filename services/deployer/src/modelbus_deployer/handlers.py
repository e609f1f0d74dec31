"""The deployer's handlers: every event it reads is folded; triggers return decisions."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from modelbus.events import types as t
from modelbus.trust import SIGNED_BY
from modelbus_deployer.domain import Deployer


def decide(event: Any, deployer: Deployer, now: datetime) -> list[Any]:
    """Fold ``event``; a registration, a load failure, an operator's request or a health
    window may call for decisions (rollout steps, judgements, promotion, rollback)."""
    return deployer.decide(event, now=now)


EVENT_HANDLERS: dict[type, list[Callable[..., list[Any]]]] = {
    t.ModelRegistered: [decide],
    t.ModelLoadFailed: [decide],
    t.PromotionRequested: [decide],
    t.RollbackRequested: [decide],
    t.ModelHealth: [decide],
    t.RolloutStarted: [decide],
    t.TrafficShifted: [decide],
    t.CanaryEvaluated: [decide],
    t.ModelPromoted: [decide],
    t.ModelRolledBack: [decide],
}

SIGNERS = tuple(
    sorted({role for kind in EVENT_HANDLERS for role in SIGNED_BY[kind.SCHEMA_NAME]})  # type: ignore[attr-defined]
)
"""Every role whose events the deployer folds: a trust file lacking one would refuse them all
(the deployer then refuses to start instead)."""


def handle(event: Any, deployer: Deployer, now: datetime) -> list[Any]:
    """Run every handler of ``event``'s type; events of other types are ignored."""
    return [
        decision
        for handler in EVENT_HANDLERS.get(type(event), [])
        for decision in handler(event, deployer, now)
    ]
