"""The fleet's one decision, stepped on contexts written by hand: the joint program's proposals, the
keep-or-switch rule of a single pipeline, and what is kept held to the quota."""

from __future__ import annotations

import dataclasses
import datetime as dt
from pathlib import Path

import pytest

from ipa_airflow.control import Context, Decision, decide, decide_fleet
from ipa_airflow.control.fleet import plan_usage
from ipa_airflow.fleet import Fleet, load_fleet
from ipa_airflow.forecasting.base import Forecast
from ipa_airflow.spec import PLAN_QUANTILES
from tests.conftest import PIPELINES

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
SPECS = ("video-cpu.yaml", "paper/audio-sent.yaml", "paper/sum-qa.yaml")


def _fleet(tmp_path: Path, cpu: float) -> Fleet:
    lines = [f"  - spec: {PIPELINES / s}" for s in SPECS]
    path = tmp_path / f"fleet-{cpu:g}.yaml"
    path.write_text("name: t\npipelines:\n" + "\n".join(lines) + f"\nquota: {{cpu: {cpu}}}\n")
    return load_fleet(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("fleet")


def _forecast(load: float, earlier=()) -> Forecast:
    at = {f"{q:g}": load for q in PLAN_QUANTILES}
    return Forecast(
        "exp-smoothing",
        20,
        load,
        at,
        NOW.isoformat(),
        earlier=tuple({f"{q:g}": e for q in PLAN_QUANTILES} for e in earlier),
    )


def _contexts(fleet: Fleet, load: float, running=None, earlier=()) -> dict[str, Context]:
    return {
        m.name: Context(NOW, _forecast(load, earlier), (running or {}).get(m.name), m.pipeline)
        for m in fleet.members
    }


def _config(decision: Decision):
    return tuple(s.config_key for s in decision.plan.stages)


def _cpu(decisions) -> float:
    return sum(plan_usage(d.plan, ("cpu",))["cpu"] for d in decisions.values())


def test_a_quota_that_does_not_bind_gives_each_pipeline_its_own_optimum(folder):
    fleet = _fleet(folder, 1000)
    ctxs = _contexts(fleet, 20.0)
    out = decide_fleet(ctxs, fleet)
    assert list(out) == fleet.pipeline_names
    for name, d in out.items():
        alone, _ = decide(ctxs[name])
        # Equal objectives (the fleet may pick a leaner plan of the same objective).
        assert d.plan.objective == pytest.approx(alone.plan.objective, abs=1e-9)
        assert d.changed and d.reason == "nothing known to run" and d.load_rps == 20.0
        info = d.load_basis["fleet"]
        assert info["quota_cost"] == pytest.approx(0.0, abs=1e-9) and not info["quota_binds"]
        assert info["objective_alone"] == pytest.approx(alone.plan.objective)
        assert d.load_basis["now"] == 20.0  # the single-pipeline basis is there too


def test_a_binding_quota_is_never_exceeded_and_the_reason_says_it_binds(folder):
    alone = decide_fleet(_contexts(_fleet(folder, 1000), 20.0), _fleet(folder, 1000))
    need = _cpu(alone)
    fleet = _fleet(folder, need - 12)
    out = decide_fleet(_contexts(fleet, 20.0), fleet)
    assert _cpu(out) <= need - 12
    costs = {n: d.load_basis["fleet"]["quota_cost"] for n, d in out.items()}
    hit = [n for n, c in costs.items() if c is not None and c > 1e-9]
    assert hit, costs
    for n in hit:
        info = out[n].load_basis["fleet"]
        assert info["quota_binds"] and "the quota binds" in out[n].reason
        assert info["objective_in_fleet"] < info["objective_alone"]
    assert sum(d.plan.objective for d in out.values()) < sum(d.plan.objective for d in alone.values())
    pools = next(iter(out.values())).load_basis["fleet"]["pools"]
    assert pools["cpu"]["quota"] == need - 12 and pools["cpu"]["used"] <= need - 12


def test_what_runs_is_kept_only_while_it_fits_and_the_one_freeing_most_switches_first(folder):
    big = _fleet(folder, 1000)
    high = decide_fleet(_contexts(big, 40.0), big)
    running = {n: _config(d) for n, d in high.items()}
    held = dict(earlier=(40.0,) * 8)  # the recent forecasts were high: alone, capacity is held
    # Without a binding quota every pipeline keeps what runs.
    kept = decide_fleet(_contexts(big, 10.0, running, **held), big)
    assert all(not d.changed for d in kept.values()), {n: d.reason for n, d in kept.items()}
    low = decide_fleet(_contexts(big, 10.0), big)
    frees = {
        n: plan_usage(high[n].plan, ("cpu",))["cpu"] - plan_usage(low[n].plan, ("cpu",))["cpu"] for n in high
    }
    first = max(frees, key=lambda n: (frees[n], n))
    # A quota the proposals fit and the kept plans do not, by less than the first one frees.
    quota = _cpu(high) - frees[first] + 1
    assert quota >= _cpu(low)
    fleet = _fleet(folder, quota)
    out = decide_fleet(_contexts(fleet, 10.0, running, **held), fleet)
    assert _cpu(out) <= quota
    assert out[first].changed and out[first].load_basis["fleet"]["kept_over_quota"]
    assert "the quota binds" in out[first].reason and "would be kept" in out[first].reason
    for n, d in out.items():
        if n != first:
            assert not d.changed and not d.load_basis["fleet"]["kept_over_quota"]


def test_the_decision_is_a_pure_function_of_the_contexts(folder):
    fleet = _fleet(folder, 40)
    a = decide_fleet(_contexts(fleet, 20.0), fleet)
    b = decide_fleet(_contexts(fleet, 20.0), fleet)
    assert {n: d.plan.plan_id for n, d in a.items()} == {n: d.plan.plan_id for n, d in b.items()}
    assert Decision.from_dict(a["video-cpu"].to_dict()).load_basis["fleet"] == dict(
        a["video-cpu"].load_basis["fleet"]
    )


def test_contexts_must_be_one_per_pipeline_of_the_fleet_under_one_policy(folder):
    fleet = _fleet(folder, 100)
    ctxs = _contexts(fleet, 10.0)
    with pytest.raises(ValueError, match="no context for paper-sum-qa"):
        decide_fleet({k: v for k, v in ctxs.items() if k != "paper-sum-qa"}, fleet)
    with pytest.raises(ValueError, match="no pipeline other in the fleet"):
        decide_fleet({**ctxs, "other": ctxs["video-cpu"]}, fleet)
    with pytest.raises(ValueError, match="is pipeline 'paper-sum-qa'"):
        decide_fleet({**ctxs, "video-cpu": ctxs["paper-sum-qa"]}, fleet)
    mixed = {**ctxs, "video-cpu": dataclasses.replace(ctxs["video-cpu"], policy="fa2-low")}
    with pytest.raises(ValueError, match="under one policy"):
        decide_fleet(mixed, fleet)


def test_a_drained_pool_switches_only_the_pipelines_that_run_on_it():
    from ipa_airflow.control.fleet import _Choice, _fit_kept

    def choice(kept: dict, proposal: dict) -> _Choice:
        return _Choice(None, 0.0, None, None, proposal, kept)  # type: ignore[arg-type]

    # h100 drained to 0: only 'b' runs there; 'a' gives back cores, which are not short.
    choices = {
        "a": choice({"cpu": 4.0, "h100": 0.0}, {"cpu": 2.0, "h100": 0.0}),
        "b": choice({"cpu": 4.0, "h100": 2.0}, {"cpu": 4.0, "h100": 0.0}),
    }
    assert _fit_kept(choices, ("cpu", "h100"), {"cpu": 10.0, "h100": 0.0}) == {"b"}
    assert choices["a"].kept and not choices["b"].kept
