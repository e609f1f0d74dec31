"""The CLI's view of rollouts, folded from the same log the deployer writes, and its refusals."""

from __future__ import annotations

from datetime import timedelta

from modelbus.cli.rollouts import fold_models, promotion_refusal, rollback_refusal
from tests.support.rollouts import T0, Run, registered, with_champion


def test_the_cli_sees_the_champion_and_the_rollout_step_the_deployer_decided() -> None:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    run.windows(2, 1, n=1, start=T0 + timedelta(seconds=5))
    view = fold_models(run.log)["credit"]
    assert (view.champion, view.registered) == (1, [1, 2])
    assert view.rollout is not None
    assert (view.rollout.candidate, view.rollout.champion) == (2, 1)
    assert view.rollout.share_pct == 25.0
    assert [e.verdict for e in view.rollout.evaluations] == ["pass"]
    assert [(r.variant, r.version, r.weight_pct) for r in view.routes] == [
        ("canary", 2, 25.0),
        ("champion", 1, 75.0),
    ]


def test_a_finished_rollout_leaves_the_new_champion_and_its_outcome() -> None:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    run.windows(2, 1, n=3, start=T0 + timedelta(seconds=5))
    view = fold_models(run.log)["credit"]
    assert (view.champion, view.rollout, view.previous_champions) == (2, None, [1])
    assert view.last_outcome.startswith("v2 promoted")


def test_promoting_an_unknown_model_or_version_or_the_champion_is_refused() -> None:
    models = fold_models(with_champion().log)
    assert promotion_refusal(models, "fraud", 1) == (
        "model 'fraud' has no registered version in the lifecycle log"
    )
    assert promotion_refusal(models, "credit", 9) == (
        "credit v9 was never registered (registered: v1)"
    )
    assert promotion_refusal(models, "credit", 1) == "credit v1 is already the champion"


def test_promoting_a_registered_version_is_accepted() -> None:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    assert promotion_refusal(fold_models(run.log), "credit", 2) is None


def test_a_rollback_needs_a_rollout_or_a_previous_champion() -> None:
    first = fold_models(with_champion().log)
    assert rollback_refusal(first, "credit", None) == (
        "credit v1 is its first champion: nothing to roll back to"
    )
    assert rollback_refusal(first, "credit", 4) == "credit v4 was never registered"
    assert rollback_refusal(first, "fraud", None) == (
        "model 'fraud' has no registered version in the lifecycle log"
    )
    assert rollback_refusal(fold_models(Run().log), "credit", None) is not None


def test_a_rollback_during_a_rollout_or_after_a_promotion_is_accepted() -> None:
    run = with_champion()
    run.feed(registered(2, T0 + timedelta(seconds=1)))
    assert rollback_refusal(fold_models(run.log), "credit", None) is None
    run.windows(2, 1, n=3, start=T0 + timedelta(seconds=5))
    promoted = fold_models(run.log)
    assert promoted["credit"].champion == 2
    assert rollback_refusal(promoted, "credit", None) is None
    assert rollback_refusal(promoted, "credit", 1) is None
