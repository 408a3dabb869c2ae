"""Registered MLflow model versions as things to profile: load one and build a batch from its input
example or signature. pytorch-flavoured models run as torch modules on the device; anything else runs
through pyfunc `predict`."""

from __future__ import annotations

import re
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..profiles import ProfileError


@dataclass
class LoadedModel:
    flavor: str  # 'pytorch' | 'pyfunc'
    example: np.ndarray  # one sample, without the batch axis
    input_desc: str
    runner: Callable[[int, str, str], Callable[[], None]]  # (batch, device, dtype) -> run one batch
    # The downloaded model's folder, removed with this object: a pyfunc model may read files from it.
    workdir: tempfile.TemporaryDirectory | None = None


def _one_sample(local: str, model_uri: str) -> tuple[np.ndarray, str]:
    """One input sample of the model downloaded to `local`, from its input example or signature."""
    from mlflow.models import Model

    meta = Model.load(local)
    if meta.saved_input_example_info:
        example = meta.load_input_example(local)
        arr = np.asarray(example)
        if arr.ndim >= 1 and arr.shape[0] >= 1:
            return arr[:1].astype(np.float32, copy=False)[0], f"input example {list(arr.shape[1:])}"
    sig = meta.signature
    if sig is not None and sig.inputs is not None and sig.inputs.is_tensor_spec():
        spec = sig.inputs.inputs[0]
        shape = [d for d in spec.shape[1:]]
        if any(d is None or d < 0 for d in shape):
            raise ProfileError(
                f"{model_uri}: signature shape {spec.shape} has unknown dimensions; "
                "log the model with an input_example"
            )
        return np.random.default_rng(0).standard_normal(shape).astype(spec.type), f"signature {shape}"
    raise ProfileError(
        f"{model_uri} has neither an input example nor a tensor signature; log it with "
        "input_example=... so it can be profiled"
    )


def _explained(run: Callable[[], None], model_uri: str, batch: int) -> Callable[[], None]:
    """Turn a model's failure on a batch into an error that says what to do about it."""

    def checked() -> None:
        try:
            run()
        except Exception as exc:
            raise ProfileError(
                f"{model_uri} failed on a batch of {batch}: {exc!s:.300}. A model saved with torch.export "
                "from a one-row input example accepts only batch size 1: log it with an input example of "
                "two or more rows (or serialization_format='pickle')."
            ) from exc

    return checked


def load_model(model_uri: str, device: str, *, tracking_uri: str | None = None) -> LoadedModel:
    """Load a registered model version from the MLflow at `tracking_uri` (its registry too).

    The model is downloaded once, through that URI, and loaded from the local copy: MLflow's loaders
    resolve `models:/` through the process-wide tracking and registry URIs, which the GPU profiling pod
    never sets (it passes only --tracking-uri), and which default to a `./mlflow.db` they would create."""
    import mlflow
    from mlflow import MlflowClient
    from mlflow.models import Model

    from ..registry.mlflow_profiles import mlflow_errors

    workdir = tempfile.TemporaryDirectory(prefix="ipa-model-")
    uri = tracking_uri or mlflow.get_tracking_uri()
    with mlflow_errors(uri, f"download {model_uri}"):
        source = model_uri
        version = re.fullmatch(r"models:/(.+)/(\d+)", model_uri)
        if version:
            # Resolve the version here: MLflow's own `models:/` resolution asks the process-wide
            # registry URI even when download_artifacts is given one.
            client = MlflowClient(tracking_uri=uri, registry_uri=uri)
            source = client.get_model_version_download_uri(version[1], version[2])
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=source, dst_path=workdir.name, tracking_uri=uri, registry_uri=uri
        )
    flavors = Model.load(local).flavors
    sample, desc = _one_sample(local, model_uri)
    if "pytorch" in flavors:
        import torch

        module = mlflow.pytorch.load_model(local, map_location=device)
        try:
            module.eval()
        except (NotImplementedError, RuntimeError):
            pass  # a torch.export program is already in inference form and refuses eval()

        def torch_runner(batch: int, device: str, dtype: str) -> Callable[[], None]:
            from .torch_runner import torch_dtype

            dt = torch_dtype(dtype)
            model = module.to(device=device, dtype=dt)
            x = torch.as_tensor(np.repeat(sample[None, ...], batch, axis=0), device=device, dtype=dt)
            sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

            def run() -> None:
                sync()
                with torch.inference_mode():
                    model(x)
                sync()

            return _explained(run, model_uri, batch)

        return LoadedModel("pytorch", sample, desc, torch_runner, workdir)

    pyfunc = mlflow.pyfunc.load_model(local)

    def pyfunc_runner(batch: int, device: str, dtype: str) -> Callable[[], None]:
        x = np.repeat(sample[None, ...], batch, axis=0)
        return _explained(lambda: pyfunc.predict(x), model_uri, batch)

    return LoadedModel("pyfunc", sample, desc, pyfunc_runner, workdir)
