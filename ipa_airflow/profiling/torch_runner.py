"""Run a torch model on a device for timing: inputs built once, device synchronised around each call."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .zoo_text import InputSpec


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
    transformers = sys.modules.get("transformers")  # imported only for the NLP/speech zoo models
    if transformers is not None:
        env["transformers"] = transformers.__version__
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
    spec = getattr(model, "input_spec", None)  # an NLP/speech zoo model (zoo_text.py) says its input
    if spec is not None:
        inputs: Any = random_inputs(spec, batch, device, dt)
    elif task == "detection":
        inputs = [torch.rand(3, input_size, input_size, device=device, dtype=dt) for _ in range(batch)]
    else:
        inputs = torch.rand(batch, 3, input_size, input_size, device=device, dtype=dt)
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)

    def run() -> None:
        sync()
        with torch.inference_mode():
            model(inputs)
        sync()

    return run


def random_inputs(spec: InputSpec, batch: int, device: str, dt):
    """A batch of one NLP/speech request's input: token ids, fbank frames or waveform samples. Seeded, so
    every batch size and every run times the same inputs."""
    import torch

    from .zoo_text import FBANK, TOKENS, WAVEFORM

    gen = torch.Generator().manual_seed(0)
    if spec.kind == TOKENS:
        ids = torch.randint(spec.low, spec.high, (batch, spec.length), generator=gen)
        return ids.to(device)
    if spec.kind == FBANK:
        return torch.randn(batch, spec.length, spec.features, generator=gen).to(device=device, dtype=dt)
    if spec.kind == WAVEFORM:
        return torch.randn(batch, spec.length, generator=gen).to(device=device, dtype=dt)
    raise ValueError(f"unknown input kind {spec.kind!r}; one of {TOKENS}, {FBANK}, {WAVEFORM}")
