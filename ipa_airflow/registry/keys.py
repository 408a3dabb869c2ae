"""Staleness keys: what must match for a stored profile to describe what will be served.

A profile measured on other hardware, another runtime, another dtype or resource shape, or for another
model version, describes something else. The key names all five, so a reader can refuse a profile that
does not match and say which part differs.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class ProfileKey:
    model_ref: str  # 'models:/name/version' or 'zoo:resnet18'
    hardware: str  # the spec's hardware name
    dtype: str
    resources: str  # 'cpu=2', 'gpu=1'
    runtime: str  # e.g. 'torch==2.14.1'

    @property
    def digest(self) -> str:
        return hashlib.sha256(json.dumps(asdict(self), sort_keys=True).encode()).hexdigest()[:16]

    def differences(self, other: ProfileKey) -> list[str]:
        return [
            f"{name}: {getattr(other, name)!r} instead of {getattr(self, name)!r}"
            for name in ("model_ref", "hardware", "dtype", "resources", "runtime")
            if getattr(self, name) != getattr(other, name)
        ]

    def to_tags(self) -> dict[str, str]:
        return {
            "ipa.model_ref": self.model_ref,
            "ipa.hardware": self.hardware,
            "ipa.dtype": self.dtype,
            "ipa.resources": self.resources,
            "ipa.runtime": self.runtime,
            "ipa.staleness_key": self.digest,
        }

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> ProfileKey:
        return cls(
            model_ref=tags["ipa.model_ref"],
            hardware=tags["ipa.hardware"],
            dtype=tags["ipa.dtype"],
            resources=tags["ipa.resources"],
            runtime=tags["ipa.runtime"],
        )


def runtime_of(environment: Mapping[str, Any]) -> str:
    """The runtime part of a key from a profile's recorded environment: the torch release (no build tag)."""
    torch = str(environment.get("torch", "unknown")).split("+", 1)[0]
    return f"torch=={torch}"
