import json

import numpy as np
import pytest

from ipa_airflow.profiles import LatencyCurve, ProfileError, ProfileSet, import_reference_jsonl
from tests.conftest import PROFILES, REPO

# A copy of the reference measurements the shipped H100 profiles were imported from (see its README).
DATA = REPO / "tests" / "data"


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


def test_shipped_profiles_equal_a_fresh_import_of_the_reference_data(h100):
    fresh = import_reference_jsonl(DATA / "h100_profile_torchvision.jsonl.gz", hardware="h100", source="x")
    assert set(fresh.profiles) == set(h100.profiles)
    for pid, p in fresh.profiles.items():
        assert p.points == h100.profiles[pid].points


# ---- profile files: every figure finite and above 0, every batch a whole number, named when bad -------
def _one_profile_file(tmp_path, mutate=None, text=None):
    data = json.loads((PROFILES / "epyc_cpu_torchvision.json").read_text())
    data["profiles"] = data["profiles"][:2]
    if mutate:
        mutate(data)
    path = tmp_path / "p.json"
    path.write_text(text if text is not None else json.dumps(data))
    return path, data


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("p99_ms", 0, "greater than 0"),
        ("p50_ms", -10.0, "greater than 0"),
        ("mean_ms", 0.0, "greater than 0"),
        ("throughput_rps", -1, "greater than 0"),
        ("batch", "1", "text '1'"),
        ("batch", True, "boolean"),
        ("batch", 2.5, "whole number"),
        ("batch", 0, "greater than 0"),
        ("p95_ms", None, "number"),
        ("cv", -0.1, "greater than or equal to 0"),
    ],
)
def test_bad_points_are_refused_naming_file_profile_point_and_field(tmp_path, field, value, says):
    def mutate(d):
        d["profiles"][1]["points"][2][field] = value

    path, data = _one_profile_file(tmp_path, mutate)
    p = data["profiles"][1]
    pid = f"{p['model']}/{p['hardware']}/{p['dtype']}/{p['resources']}"
    with pytest.raises(ProfileError) as exc:
        ProfileSet.load([path])
    text = str(exc.value)
    assert str(path) in text
    assert f"profiles[1] ({pid}).points[2].{field}: " in text and says in text, text


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_are_refused(tmp_path, constant):
    path, _ = _one_profile_file(tmp_path)
    text = path.read_text().replace('"p99_ms": ', f'"p99_ms": {constant}, "x": ', 1)
    path.write_text(text)
    with pytest.raises(ProfileError, match=f"{str(path)}.*{constant.lstrip('-')}"):
        ProfileSet.load([path])


@pytest.mark.parametrize(
    ("mutate", "says"),
    [
        (lambda d: d["profiles"][0]["points"].append(d["profiles"][0]["points"][0]), "measured twice"),
        (lambda d: d["profiles"].append(d["profiles"][0]), "given twice"),
        (lambda d: d["profiles"][0].update(points=[]), "points: List should have at least 1 item"),
        (lambda d: d["profiles"][0].update(resources="cpu=abc"), "'cpu=N' or 'gpu=N'"),
        (lambda d: d["profiles"][0].update(resources="cpu=0"), "more than nothing"),
        (lambda d: d["profiles"][0]["points"][0].update(p50_ms=1e6), "p50 <= p95 <= p99"),
        (lambda d: d["profiles"][0]["points"][0].update(p_99=3), "points[0].p_99: unknown key"),
        (lambda d: d.update(profiles=[]), "profiles: List should have at least 1 item"),
        (lambda d: d.update(schema_version=2), "schema_version"),
    ],
)
def test_malformed_profiles_are_refused_with_the_field(tmp_path, mutate, says):
    path, _ = _one_profile_file(tmp_path, mutate)
    with pytest.raises(ProfileError, match="malformed") as exc:
        ProfileSet.load([path])
    assert says in str(exc.value), str(exc.value)


def test_a_repeated_key_and_a_lone_profile_are_refused(tmp_path):
    path, _ = _one_profile_file(tmp_path, text='{"profiles": [], "profiles": []}')
    with pytest.raises(ProfileError, match="duplicate key 'profiles'"):
        ProfileSet.load([path])
    _, data = _one_profile_file(tmp_path)
    path.write_text(json.dumps(data["profiles"][0]))
    with pytest.raises(ProfileError, match="holds one profile"):
        ProfileSet.load([path])


def test_one_profile_in_two_files_must_agree(tmp_path):
    a, data = _one_profile_file(tmp_path)
    b = tmp_path / "b.json"
    b.write_text(a.read_text())
    assert len(ProfileSet.load([a, b])) == 2  # the same measurements twice: harmless
    data["profiles"][0]["points"][0]["p99_ms"] *= 2
    b.write_text(json.dumps(data))
    with pytest.raises(ProfileError, match=rf"in both {a} and {b}"):
        ProfileSet.load([a, b])


def test_an_mlflow_profile_is_checked_as_a_file_entry_is(tmp_path):
    from ipa_airflow.profiles import Profile

    _, data = _one_profile_file(tmp_path)
    entry = data["profiles"][0]
    assert Profile.from_dict(entry).id == "/".join(
        entry[k] for k in ("model", "hardware", "dtype", "resources")
    )
    entry["points"][1]["throughput_rps"] = float("inf")
    with pytest.raises(ProfileError, match=r"points\[1\]\.throughput_rps: must be a finite number"):
        Profile.from_dict(entry, source="MLflow run abc")


def test_published_accuracy_ignores_booleans_and_infinity(h100):
    from dataclasses import replace

    from ipa_airflow.profiles import published_accuracy

    p = next(iter(h100))
    assert published_accuracy(replace(p, accuracy_meta={"acc@1": True})) is None
    assert published_accuracy(replace(p, accuracy_meta={"acc@1": float("inf")})) is None
    assert published_accuracy(replace(p, accuracy_meta={"acc@1": 76.1})) == 76.1
