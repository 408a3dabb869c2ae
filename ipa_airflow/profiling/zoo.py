"""The model zoo: real torchvision architectures with random weights and the accuracy published with
their weights (read from the weights' metadata, which ships with torchvision; no download)."""

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
    task: str  # classification | detection
    input_size: int
    accuracy: float  # ImageNet-1K acc@1 or COCO box mAP, percent
    metric: str
    weights: str


def zoo_model(name: str) -> ZooModel:
    import torchvision

    if name not in CLASSIFICATION + DETECTION:
        raise KeyError(f"'{name}' is not in the zoo; choose one of {', '.join(CLASSIFICATION + DETECTION)}")
    weights = torchvision.models.get_model_weights(name).DEFAULT
    metrics: dict[str, Any] = weights.meta["_metrics"]
    if name in DETECTION:
        size = 320 if name.endswith("_320_fpn") else 640
        return ZooModel(
            name, "detection", size, float(metrics["COCO-val2017"]["box_map"]), "coco_box_map", str(weights)
        )
    return ZooModel(
        name, "classification", 224, float(metrics["ImageNet-1K"]["acc@1"]), "imagenet_top1", str(weights)
    )


def build(name: str):
    """The architecture with random weights, in eval mode."""
    import torchvision

    kwargs = {"weights": None}
    if name in DETECTION:
        kwargs["weights_backbone"] = None
    return torchvision.models.get_model(name, **kwargs).eval()
