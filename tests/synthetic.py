"""Small random pipelines (spec + measured-looking profiles) for property-based tests."""

from __future__ import annotations

from hypothesis import strategies as st

from ipa_airflow.profiles import BatchPoint, Profile, ProfileSet
from ipa_airflow.spec import PipelineSpec

BATCHES = [1, 2, 4, 8]


@st.composite
def instances(draw, *, methods=("sum", "average", "product"), max_stages=3, max_variants=3):
    n_stages = draw(st.integers(1, max_stages))
    method = draw(st.sampled_from(methods))
    profiles = {}
    stages = []
    for s in range(n_stages):
        variants = []
        for v in range(draw(st.integers(1, max_variants))):
            name = f"s{s}v{v}"
            shapes = []
            for cores in draw(st.sampled_from([[1], [2], [1, 2]])):
                base = draw(st.floats(2.0, 200.0))
                slope = draw(st.floats(0.05, 1.2))
                points = tuple(
                    BatchPoint(b, base * (1 + slope * (b - 1)) / cores**0.7, 0, 0, 0, 0) for b in BATCHES
                )
                points = tuple(
                    BatchPoint(
                        p.batch,
                        p.p50_ms,
                        p.p50_ms * 1.1,
                        p.p50_ms * 1.2,
                        p.p50_ms,
                        p.batch / (p.p50_ms / 1000),
                    )
                    for p in points
                )
                prof = Profile(name, "hw", "fp32", f"cpu={cores:g}", points)
                profiles[prof.id] = prof
                shapes.append({"hardware": "hw", "resources": {"cpu": cores}})
            variants.append({"name": name, "accuracy": draw(st.floats(1.0, 99.0)), "shapes": shapes})
        stages.append({"name": f"stage{s}", "variants": variants})
    max_replicas = draw(st.integers(1, 20))
    spec = PipelineSpec.from_dict(
        {
            "name": "prop",
            "sla_s": draw(st.floats(0.005, 2.0)),
            "objective": {
                "alpha": draw(st.floats(0.1, 10.0)),
                "beta": draw(st.floats(0.0, 0.5)),
                "gamma": draw(st.floats(0.0, 0.01)),
                "accuracy": method,
                "rank_normalize": draw(st.booleans()),
            },
            "limits": {"batch_sizes": BATCHES, "max_replicas": max_replicas},
            "baselines": {"rim_replicas": draw(st.integers(1, min(6, max_replicas)))},
            "stages": stages,
        }
    )
    load = draw(st.floats(0.5, 400.0))
    return spec, ProfileSet(profiles), load
