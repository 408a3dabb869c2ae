"""Registered MLflow model versions as things to profile: load one and build a batch from its input
example or signature. pytorch-flavoured models run as torch modules on the device; anything else runs
through pyfunc `predict`."""

from __future__ import annotations

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


def _one_sample(model_uri: str) -> tuple[np.ndarray, str]:
    import mlflow
    from mlflow.models import Model

    with tempfile.TemporaryDirectory() as tmp:
        local = mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=tmp)
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


def load_model(model_uri: str, device: str) -> LoadedModel:
    import mlflow
    from mlflow.models import get_model_info

    info = get_model_info(model_uri)
    sample, desc = _one_sample(model_uri)
    if "pytorch" in info.flavors:
        import torch

        module = mlflow.pytorch.load_model(model_uri, map_location=device)
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

        return LoadedModel("pytorch", sample, desc, torch_runner)

    pyfunc = mlflow.pyfunc.load_model(model_uri)

    def pyfunc_runner(batch: int, device: str, dtype: str) -> Callable[[], None]:
        x = np.repeat(sample[None, ...], batch, axis=0)
        return _explained(lambda: pyfunc.predict(x), model_uri, batch)

    return LoadedModel("pyfunc", sample, desc, pyfunc_runner)
