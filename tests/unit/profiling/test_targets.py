"""Which profiles a new model version gets: every shape the specs ask of its registered model, once, on
the worker when the hardware is the worker's own, else in a pod; a model no spec asks for the old way."""

from __future__ import annotations

import json

import pytest

from ipa_airflow.profiling.targets import (
    ProfilingTarget,
    profiling_targets,
    registered_name,
    split_version_uri,
    unmeasurable_shapes,
)
from ipa_airflow.spec import PipelineSpec


def _shape(hardware, *, cpu=None, gpu=None, dtype="fp32"):
    resources = {"cpu": cpu} if cpu is not None else {"gpu": gpu}
    return {"hardware": hardware, "dtype": dtype, "resources": resources}


def _spec(name, stages):
    return PipelineSpec.from_dict({"name": name, "sla_s": 0.5, "stages": stages})


def _registry_stage(stage, model, shapes):
    return {
        "name": stage,
        "registered_model": {
            "name": model,
            "select": {"newest": 2},
            "accuracy": {"tag": "ipa.accuracy"},
            "shapes": shapes,
        },
    }


def _variant(name, shapes, model_uri=None):
    v = {"name": name, "accuracy": 70.0, "shapes": shapes}
    return v | ({"model_uri": model_uri} if model_uri else {})


# A CPU pipeline taking its detector from the registry, a classifier listed by version; a GPU pipeline
# listing the detector by alias (one shape repeats the first spec's), and a model whose name only
# starts like the detector's.
CPU = _spec(
    "video-cpu",
    [
        _registry_stage("detect", "detector", [_shape("epyc", cpu=1), _shape("epyc", cpu=2)]),
        {"name": "classify", "variants": [_variant("r18", [_shape("epyc", cpu=1)], "models:/classifier/3")]},
    ],
)
GPU = _spec(
    "video-gpu",
    [
        {
            "name": "detect",
            "variants": [
                _variant(
                    "champion",
                    [_shape("h100", gpu=1, dtype="fp16"), _shape("epyc", cpu=2)],
                    "models:/detector@champion",
                ),
                _variant("other", [_shape("t4", gpu=1)], "models:/detector-v2/1"),
                _variant("zoo", [_shape("a10", gpu=1)]),
            ],
        }
    ],
)


def _found(name, version, specs, worker="epyc", threads=(1, 2)):
    return profiling_targets(name, version, specs, worker_hardware=worker, fallback_threads=threads)


def test_every_shape_any_spec_asks_of_the_model_once_in_spec_order():
    found = _found("detector", "7", [CPU, GPU])
    assert [(t.hardware, t.resources, t.dtype, t.where) for t in found] == [
        ("epyc", "cpu=1", "fp32", "worker"),
        ("epyc", "cpu=2", "fp32", "worker"),  # asked by both specs: profiled once
        ("h100", "gpu=1", "fp16", "pod"),
    ]
    assert {t.model_uri for t in found} == {"models:/detector/7"}  # the new version, not the alias's


def test_the_worker_is_whichever_hardware_it_is_named():
    found = _found("detector", "7", [CPU, GPU], worker="h100")
    assert [(t.hardware, t.where) for t in found] == [("epyc", "pod"), ("epyc", "pod"), ("h100", "worker")]


def test_a_listed_variant_asks_for_its_own_model_only():
    [classifier] = _found("classifier", "4", [CPU, GPU])
    assert classifier == ProfilingTarget("models:/classifier/4", "epyc", "fp32", 1.0, None, "worker")
    [other] = _found("detector-v2", "2", [CPU, GPU])
    assert (other.hardware, other.gpu, other.where) == ("t4", 1, "pod")
    assert registered_name("models:/detector-v2/1") == "detector-v2"
    assert registered_name("models:/detector@champion") == "detector"
    assert registered_name("runs:/abc/model") is None


def test_a_model_no_spec_asks_for_is_profiled_on_the_worker_at_each_thread_count():
    found = _found("unlisted", "1", [CPU, GPU], worker="airflow-cpu", threads=(1, 2, 2))
    assert found == [
        ProfilingTarget("models:/unlisted/1", "airflow-cpu", "fp32", 1.0, None, "worker"),
        ProfilingTarget("models:/unlisted/1", "airflow-cpu", "fp32", 2.0, None, "worker"),
    ]
    assert _found("unlisted", "1", [], threads=(4,))[0].threads == 4


def test_a_gpu_target_runs_on_cuda_and_a_cpu_target_on_its_cores():
    found = {t.resources: t for t in _found("detector", "7", [CPU, GPU])}
    gpu, cpu = found["gpu=1"], found["cpu=2"]
    assert gpu.operator_kwargs() == {
        "model_uri": "models:/detector/7",
        "hardware": "h100",
        "dtype": "fp16",
        "cpu": None,
        "gpu": 1,
    }
    assert cpu.operator_kwargs() == {
        "model_uri": "models:/detector/7",
        "hardware": "epyc",
        "device": "cpu",
        "threads": 2,
        "dtype": "fp32",
    }
    assert (gpu.device, gpu.threads, cpu.device) == ("cuda", 1, "cpu")
    assert gpu.label == "detector v7 on h100 gpu=1 fp16" and cpu.label == "detector v7 on epyc cpu=2 fp32"


def test_a_target_crosses_xcom_as_plain_json():
    for t in _found("detector", "7", [CPU, GPU]):
        assert ProfilingTarget.from_dict(json.loads(json.dumps(t.to_dict()))) == t
    with pytest.raises(ValueError, match="one of \\['worker', 'pod'\\], not 'cluster'"):
        ProfilingTarget.from_dict({**t.to_dict(), "where": "cluster"})


def test_shapes_the_profiler_cannot_file_as_asked_are_named_not_profiled():
    odd = _spec(
        "odd",
        [
            _registry_stage(
                "detect",
                "detector",
                [_shape("epyc", cpu=0.5), _shape("h100", gpu=2), _shape("t4", gpu=1, dtype="int8")],
            )
        ],
    )
    assert _found("detector", "7", [odd]) == []  # asked for, so no fallback under the worker's name
    assert unmeasurable_shapes("detector", [odd]) == [
        "epyc cpu=0.5 fp32: the profiler runs whole CPU threads, not cpu=0.5",
        "h100 gpu=2 fp32: the profiler measures one GPU per replica, not gpu=2",
        "t4 gpu=1 int8: the profiler measures fp32, fp16, bf16, not int8",
    ]
    assert unmeasurable_shapes("detector", [CPU, GPU]) == []
    assert [t.resources for t in _found("detector", "7", [odd, CPU])] == ["cpu=1", "cpu=2"]


def test_a_version_uri_splits_into_name_and_version():
    assert split_version_uri("models:/video-classifier/12") == ("video-classifier", "12")
    with pytest.raises(ValueError, match="not a model version URI"):
        split_version_uri("models:/video-classifier@champion")
