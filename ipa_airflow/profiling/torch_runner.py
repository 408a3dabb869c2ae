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


def torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[name]


def resolve_device(device: str) -> str:
    """'auto' is cuda when a GPU is present, else cpu; asking for cuda without one is an error."""
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but torch sees no CUDA device on this machine")
    return device


class PeakMemory:
    """Peak GPU memory on CUDA, the process's resident-set high-water mark on CPU, in MiB."""

    def __init__(self, device: str):
        self.device = device

    def reset(self) -> None:
        if self.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()

    def read_mb(self) -> float:
        if self.device == "cuda":
            import torch

            return torch.cuda.max_memory_allocated() / 2**20
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


def batch_runner(
    model, task: str, input_size: int, batch: int, device: str, dtype: str
) -> Callable[[], None]:
    import torch

    dt = torch_dtype(dtype)
    model = model.to(device=device, dtype=dt)
    if task == "detection":
        inputs: Any = [torch.rand(3, input_size, input_size, device=device, dtype=dt) for _ in range(batch)]
    else:
        inputs = torch.rand(batch, 3, input_size, input_size, device=device, dtype=dt)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> None:
        sync()
        with torch.inference_mode():
            model(inputs)
        sync()

    return run
