"""The V2 (Open Inference) protocol over HTTP, as much of it as a client of MLServer needs: a model's
input from its metadata, a request body from an array, and one inference call."""

from __future__ import annotations

import json
import urllib.request
from dataclasses import dataclass
from typing import Any

import numpy as np

_NP = {"FP32": np.float32, "FP64": np.float64, "INT64": np.int64, "INT32": np.int32}


@dataclass(frozen=True)
class ModelInput:
    name: str
    datatype: str
    shape: tuple[int, ...]  # without the batch axis

    def sample(self, rows: int, seed: int = 0) -> np.ndarray:
        dtype = _NP.get(self.datatype, np.float32)
        return np.random.default_rng(seed).standard_normal((rows, *self.shape)).astype(dtype)


def model_input(base_url: str, model: str, timeout_s: float = 10.0) -> ModelInput:
    """The model's first input, from GET /v2/models/<model> (MLServer fills it from the MLflow signature)."""
    with urllib.request.urlopen(f"{base_url}/v2/models/{model}", timeout=timeout_s) as r:
        meta = json.loads(r.read())
    inputs = meta.get("inputs") or []
    if not inputs:
        raise ValueError(f"{base_url}/v2/models/{model} lists no inputs: log the model with a signature")
    first = inputs[0]
    shape = tuple(int(d) for d in first["shape"][1:])
    if any(d < 0 for d in shape):
        raise ValueError(f"{model}'s input {first['name']} has unknown dimensions {first['shape']}")
    return ModelInput(first["name"], first["datatype"], shape)


def request_body(inp: ModelInput, batch: np.ndarray) -> bytes:
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": inp.name,
                "shape": list(batch.shape),
                "datatype": inp.datatype,
                "data": batch.ravel().tolist(),
            }
        ]
    }
    return json.dumps(body).encode()


def infer(base_url: str, model: str, body: bytes, timeout_s: float = 30.0) -> dict[str, Any]:
    req = urllib.request.Request(
        f"{base_url}/v2/models/{model}/infer", data=body, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as r:
        return json.loads(r.read())
