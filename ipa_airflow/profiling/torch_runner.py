"""Run a torch model on a device for timing: inputs built once, device synchronised around each call."""

from __future__ import annotations

import platform
from collections.abc import Callable
from typing import Any


def environment(device: str, threads: int, dtype: str) -> dict[str, Any]:
    import torch

    env: dict[str, Any] = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": device,
        "threads": threads,
        "dtype": dtype,
        "cpu": platform.processor() or platform.machine(),
    }
    try:
        with open("/proc/cpuinfo") as fh:
            env["cpu"] = next(line.split(":", 1)[1].strip() for line in fh if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    if device == "cuda":
        env["gpu"] = torch.cuda.get_device_name(0)
        env["cuda"] = torch.version.cuda
        env["cudnn"] = torch.backends.cudnn.version()
    return env


def batch_runner(
    model, task: str, input_size: int, batch: int, device: str, dtype: str
) -> Callable[[], None]:
    import torch

    torch_dtype = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[dtype]
    model = model.to(device=device, dtype=torch_dtype)
    if task == "detection":
        inputs: Any = [
            torch.rand(3, input_size, input_size, device=device, dtype=torch_dtype) for _ in range(batch)
        ]
    else:
        inputs = torch.rand(batch, 3, input_size, input_size, device=device, dtype=torch_dtype)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> None:
        sync()
        with torch.inference_mode():
            model(inputs)
        sync()

    return run
