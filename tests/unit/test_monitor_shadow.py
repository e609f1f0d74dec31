"""The monitor's shadow arm: a shadow result shares its request id with the champion's answer,
and both join the one label of that request."""

from __future__ import annotations

from modelbus_monitor.domain import ModelMonitor
from modelbus_monitor.evidence import Gates
from modelbus_monitor.joins import ResultFacts


def monitor() -> ModelMonitor:
    return ModelMonitor(
        "credit", Gates(), join_window_s=60, window_s=5, lateness_s=1,
        cooldown_s=600, rearm_after=2000,
    )  # fmt: skip


def test_a_shadow_result_and_the_champion_result_of_one_request_each_join_its_label() -> None:
    watched = monitor()
    for i in range(4):
        at_s = 10.0 + i
        watched.result(f"r{i}", ResultFacts(1, "champion", (0.25, 0.75), 1, at_s, 2.0))
        watched.result(f"r{i}", ResultFacts(2, "shadow", (0.9, 0.1), 0, at_s, 3.0))
        watched.label(f"r{i}", 1, 12.0)
    windows = {(w.version, w.variant): w for w in watched.close(16.0)}
    assert sorted(windows) == [(1, "champion"), (2, "shadow")]
    champion, shadow = windows[(1, "champion")], windows[(2, "shadow")]
    assert (champion.requests, champion.labelled, champion.correct) == (4, 4, 4)
    assert (shadow.requests, shadow.labelled, shadow.correct) == (4, 4, 0)
    assert watched.joins.duplicates == watched.shadow_joins.duplicates == 0


def test_labels_of_requests_without_a_shadow_result_leave_the_shadow_joins_empty() -> None:
    watched = monitor()
    for i in range(3):
        watched.result(f"r{i}", ResultFacts(1, "champion", (0.25, 0.75), 1, 10.0 + i, 2.0))
        watched.label(f"r{i}", 1, 12.0)
    assert len(watched.shadow_joins) == 0
    ((version, variant),) = [(w.version, w.variant) for w in watched.close(16.0)]
    assert (version, variant) == (1, "champion")
