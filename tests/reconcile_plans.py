"""What the reconcile tests share: a clock the reconciler's waits advance, and a plan change that has
every kind of step (a variant switch that adds a replica, applied first and waited for; a scale-down,
applied last)."""

from __future__ import annotations

from dataclasses import replace

from ipa_airflow.optimizer import plan as solve
from ipa_airflow.plans import Plan


class FakeClock:
    def __init__(self, now: float = 1000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def sleep(self, s: float) -> None:
        self.now += s


def switch_plans(video) -> tuple[Plan, Plan]:
    """(before, after) on the video-gpu pipeline: after switches detect's variant with one more replica and
    scales classify down from 3 to 2."""
    base = solve(video.spec, video.profiles, 1000)
    detect, classify = base.stages
    before = replace(base, stages=(detect, replace(classify, replicas=3)))
    after = replace(
        base,
        stages=(
            replace(detect, variant="retinanet-r50", replicas=detect.replicas + 1),
            replace(classify, replicas=2),
        ),
    )
    return before, after
