"""The model zoo: real torchvision architectures with random weights and the accuracy published with
their weights (read from the weights' metadata, which ships with torchvision; no download), and the IPA
paper's NLP and speech architectures (zoo_text.py: transformers models built from published configs).
This module is the one entry point: `names`, `zoo_model` and `build` cover both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

CLASSIFICATION = (
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "efficientnet_b3",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
)
DETECTION = (
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "fasterrcnn_mobilenet_v3_large_fpn",
    "retinanet_resnet50_fpn",
    "fcos_resnet50_fpn",
    "fasterrcnn_resnet50_fpn",
)


@dataclass(frozen=True)
class ZooModel:
    name: str
    task: str  # classification | detection, or an NLP/speech task (zoo_text.py)
    input_size: int  # image side in px; NLP/speech: tokens, fbank frames or samples (input_desc says)
    accuracy: float  # ImageNet-1K acc@1, COCO box mAP, or the NLP/speech metric, percent
    metric: str
    weights: str  # torchvision's weights enum; NLP/speech: the published model whose config is built
    input_desc: str = ""  # what one request carries
    accuracy_source: str = ""  # NLP/speech: where the accuracy is published


def _text_names() -> tuple[str, ...]:
    from . import zoo_text  # imports torch: only when a name is not torchvision's

    return zoo_text.NAMES


def names() -> tuple[str, ...]:
    """Every zoo model name, torchvision's first."""
    return CLASSIFICATION + DETECTION + _text_names()


def _check(name: str) -> None:
    if name not in names():
        raise KeyError(f"'{name}' is not in the zoo; choose one of {', '.join(names())}")


def zoo_model(name: str) -> ZooModel:
    if name not in CLASSIFICATION + DETECTION:
        _check(name)
        return _text_zoo_model(name)
    import torchvision

    weights = torchvision.models.get_model_weights(name).DEFAULT
    metrics: dict[str, Any] = weights.meta["_metrics"]
    if name in DETECTION:
        size = 320 if name.endswith("_320_fpn") else 640
        return ZooModel(
            name,
            "detection",
            size,
            float(metrics["COCO-val2017"]["box_map"]),
            "coco_box_map",
            str(weights),
            f"{size}px random image",
        )
    return ZooModel(
        name,
        "classification",
        224,
        float(metrics["ImageNet-1K"]["acc@1"]),
        "imagenet_top1",
        str(weights),
        "224px random image",
    )


def _text_zoo_model(name: str) -> ZooModel:
    from . import zoo_text

    e = zoo_text.entry(name)
    return ZooModel(
        name,
        e.task,
        e.input.length,
        e.accuracy,
        e.metric,
        f"random weights, config of {e.source}",
        e.input_desc,
        e.accuracy_source,
    )


def build(name: str):
    """The architecture with random weights, in eval mode. An NLP/speech model is a module whose forward
    takes torch_runner.random_inputs of its `input_spec` and does one request's work."""
    if name not in CLASSIFICATION + DETECTION:
        from . import zoo_text

        _check(name)
        return zoo_text.build(name)
    import torchvision

    kwargs = {"weights": None}
    if name in DETECTION:
        kwargs["weights_backbone"] = None
    return torchvision.models.get_model(name, **kwargs).eval()
