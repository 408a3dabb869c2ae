import json

import numpy as np
import pytest

from ipa_airflow.profiles import LatencyCurve, ProfileError, ProfileSet, import_reference_jsonl
from tests.conftest import PROFILES

SHARED = PROFILES.parent.parent / "shared" / "data"


@pytest.fixture(scope="module")
def h100():
    return ProfileSet.load([PROFILES / "h100_torchvision.json"])


def test_curve_is_exact_on_a_quadratic_and_monotone():
    b = [1, 2, 4, 8, 16]
    curve = LatencyCurve.fit(b, [3 + 0.5 * x + 0.01 * x * x for x in b])
    assert curve.max_rel_error < 1e-6
    assert np.allclose(curve.coeffs, (3, 0.5, 0.01), rtol=1e-5)
    # Noisy, non-monotone measurements still give a curve that never falls with batch size.
    noisy = LatencyCurve.fit(b, [5.0, 4.5, 4.8, 6.0, 9.0])
    values = [noisy(x) for x in range(1, 65)]
    assert all(later >= earlier for earlier, later in zip(values, values[1:], strict=False))
    assert noisy.max_rel_error > 0


def test_measured_points_are_used_as_measured(h100):
    p = h100.get("resnet50/h100/fp16/gpu=1")
    assert p.measured_batches == [1, 2, 4, 8, 16, 32, 64, 128]
    point = p.points[3]
    assert p.latency_ms(8, "p99") == point.p99_ms
    assert p.throughput_rps(8) == pytest.approx(8 / (point.mean_ms / 1000))


def test_unmeasured_batch_is_filled_by_the_curve_and_never_below_smaller_batches(h100):
    p = h100.get("fcos_resnet50_fpn/h100/fp16/gpu=1")
    assert p.measured_batches == [1, 2, 4, 8, 16]
    lat12 = p.latency_ms(12, "p99")
    assert lat12 >= p.latency_ms(8, "p99")
    assert lat12 >= p.curve("p99")(12) - 1e-9
    assert p.is_extrapolated(32) and not p.is_extrapolated(12)


def test_missing_profile_error_names_it_and_its_neighbours(h100):
    with pytest.raises(ProfileError) as exc:
        h100.get("resnet50/h100/fp32/gpu=2", wanted_by="classify/resnet50")
    text = str(exc.value)
    assert "resnet50/h100/fp32/gpu=2" in text and "classify/resnet50" in text
    assert "resnet50/h100/fp16/gpu=1" in text  # what exists instead
    assert "ipa profile" in text


def test_malformed_profile_files(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(ProfileError, match="not valid JSON"):
        ProfileSet.load([bad])
    bad.write_text(json.dumps({"profiles": [{"model": "m"}]}))
    with pytest.raises(ProfileError, match="malformed"):
        ProfileSet.load([bad])
    with pytest.raises(ProfileError, match="cannot read"):
        ProfileSet.load([tmp_path / "missing.json"])


def test_round_trip(h100, tmp_path):
    path = tmp_path / "p.json"
    path.write_text(json.dumps(h100.to_dict()))
    again = ProfileSet.load([path])
    assert again.profiles == h100.profiles


@pytest.mark.skipif(not SHARED.exists(), reason="../shared/data is not beside this checkout")
def test_shipped_profiles_equal_a_fresh_import_of_the_reference_data(h100):
    fresh = import_reference_jsonl(SHARED / "h100_profile_torchvision.jsonl.gz", hardware="h100", source="x")
    assert set(fresh.profiles) == set(h100.profiles)
    for pid, p in fresh.profiles.items():
        assert p.points == h100.profiles[pid].points
