"""The models `ipa live` serves: registered in MLflow as versions of the live spec's registered models
(each version another torchvision architecture, random weights, 3x64x64 inputs so a 2-core machine
serves tens of requests a second), tagged with their published accuracy, and profiled on this machine
through the same profile-and-register path as `ipa profile`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..profiling.job import Method

INPUT = (3, 64, 64)
HARDWARE = "local-cpu"  # the live spec's shapes name it
# registered model -> its versions' architectures, oldest first (`select: {newest: 2}` takes both).
MODELS = {
    "ipa-live-first": ("mobilenet_v3_small", "resnet18"),
    "ipa-live-second": ("mobilenet_v3_small", "efficientnet_b0"),
}


@dataclass(frozen=True)
class Prepared:
    model_uri: str
    architecture: str
    accuracy: float
    registered: bool  # False: it was there already
    profile_run: str | None


def _register(client, name: str, architecture: str) -> tuple[str, bool]:
    """The version of `name` that runs `architecture` (tag ipa.live.architecture), registered if missing."""
    import mlflow
    import torch

    from ..profiling.zoo import build, zoo_model

    for mv in client.search_model_versions(f"name='{name}'"):
        if mv.tags.get("ipa.live.architecture") == architecture:
            return f"models:/{name}/{mv.version}", False
    torch.manual_seed(0)
    module = build(architecture).eval()
    with mlflow.start_run(run_name=f"live {name} {architecture}"):
        info = mlflow.pytorch.log_model(
            module,
            name="model",
            input_example=np.zeros((2, *INPUT), np.float32),  # two rows: batches of any size load
            registered_model_name=name,
        )
    version = str(info.registered_model_version)
    client.set_model_version_tag(name, version, "accuracy", f"{zoo_model(architecture).accuracy / 100:.4f}")
    client.set_model_version_tag(name, version, "ipa.live.architecture", architecture)
    return f"models:/{name}/{version}", True


def prepare(
    tracking_uri: str,
    *,
    batch_sizes: tuple[int, ...] = (1, 2, 4),
    methods: tuple[Method, ...] = ("in-process", "served"),
    say: Callable[[str], None] = lambda message: None,
) -> list[Prepared]:
    """Register what is missing and profile every version on one core of this machine, by each of
    `methods`: in-process (a bare model call) and served (through MLServer, which is what the live
    replicas are); the profiles are filed in MLflow, where the live spec's stages find them."""
    import mlflow

    from ..profiling.job import prepare as prepare_job
    from ..profiling.job import profile_and_register
    from ..profiling.timing import TimingSettings
    from ..profiling.zoo import zoo_model
    from ..registry import registry_for

    mlflow.set_tracking_uri(tracking_uri)
    registry = registry_for(tracking_uri)
    client = mlflow.MlflowClient(tracking_uri=tracking_uri, registry_uri=tracking_uri)
    out = []
    for name, architectures in MODELS.items():
        for architecture in architectures:
            uri, new = _register(client, name, architecture)
            say(f"{'registered' if new else 'found'} {uri} ({architecture})")
            run_id = None
            for method in methods:
                job = prepare_job(
                    zoo=None,
                    model_uri=uri,
                    name=None,
                    batch_sizes=batch_sizes,
                    device="cpu",
                    threads=1,
                    dtype="fp32",
                    hardware=HARDWARE,
                    registry=registry,
                    log=True,
                    say=say,
                    method=method,
                )
                summary = profile_and_register(
                    job, registry, settings=TimingSettings(min_iters=20, min_seconds=1.0)
                )
                cells = ", ".join(f"b{c['batch']} p99 {c['p99_ms']:.1f} ms" for c in summary["cells"])
                say(f"profiled {uri} ({method}): {cells}")
                run_id = run_id or summary.get("run_id")
            out.append(
                Prepared(uri, architecture, zoo_model(architecture).accuracy, new, summary.get("run_id"))
            )
    return out


def profile_ratios(tracking_uri: str) -> list[dict]:
    """Served over in-process, per version and batch size, for every version of the live models with both
    profiles in MLflow (what `prepare` filed): how far a bare model call is from a served request."""
    from ..profiling.served import served_vs_inprocess
    from ..registry import registry_for
    from ..spec import Resources, Shape

    shape = Shape(hardware=HARDWARE, resources=Resources(cpu=1))
    readers = {m: registry_for(tracking_uri, method=m) for m in ("in-process", "served")}
    client = readers["served"].client
    rows = []
    for name in MODELS:
        for mv in sorted(client.search_model_versions(f"name='{name}'"), key=lambda v: int(v.version)):
            uri = f"models:/{name}/{mv.version}"
            served = readers["served"].find_profile(uri, shape)
            inprocess = readers["in-process"].find_profile(uri, shape)
            if served is None or inprocess is None:
                continue
            arch = mv.tags.get("ipa.live.architecture", "")
            rows += [
                {"model_uri": uri, "architecture": arch, **r} for r in served_vs_inprocess(served, inprocess)
            ]
    return rows
