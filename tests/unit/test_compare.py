from ipa_airflow.profiles import BatchPoint, Profile, ProfileSet
from ipa_airflow.reports.compare import compare


def _profile(hardware, p50s):
    points = tuple(BatchPoint(b, v, v, v, v, b / v * 1000) for b, v in p50s.items())
    return Profile("resnet18", hardware, "fp32", "cpu=1", points)


def test_ratios_match_cells_by_model_dtype_and_resources():
    ours = ProfileSet({"a": _profile("epyc", {1: 50.0, 2: 90.0, 4: 200.0})})
    ref = ProfileSet({"b": _profile("xeon", {1: 40.0, 2: 90.0, 8: 300.0})})
    report = compare(ours, ref)
    assert [(r["batch"], r["ratio"]) for r in report["rows"]] == [(1, 1.25), (2, 1.0)]
    assert report["median_ratio"] == 1.125
