"""What must change: desired Deployments against observed ones, per stage, readable by a person. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .desired import ANN_BATCH, ANN_SHAPE, ANN_VARIANT, LABEL_STAGE

CREATE, SWITCH, SCALE_UP, SCALE_DOWN, UPDATE, UNCHANGED = (
    "create",
    "switch-variant",
    "scale-up",
    "scale-down",
    "update",
    "unchanged",
)


@dataclass(frozen=True)
class StageChange:
    stage: str
    name: str
    action: str
    changes: Mapping[str, tuple[Any, Any]] = field(default_factory=dict)  # field -> (before, after)

    @property
    def adds_capacity(self) -> bool:
        """Applied (and waited for) before anything that removes capacity."""
        return self.action in (CREATE, SWITCH, SCALE_UP, UPDATE)

    def describe(self) -> str:
        if self.action == UNCHANGED:
            return f"{self.stage}: unchanged"
        parts = ", ".join(f"{k} {b!s} -> {a!s}" for k, (b, a) in self.changes.items())
        return f"{self.stage}: {self.action} ({parts})"

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "name": self.name,
            "action": self.action,
            "changes": {k: [b, a] for k, (b, a) in self.changes.items()},
        }


def _view(d: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fields we manage, flattened for comparison."""
    if d is None:
        return {}
    ann = d.get("metadata", {}).get("annotations", {}) or {}
    c = ((d.get("spec", {}).get("template", {}).get("spec", {}) or {}).get("containers") or [{}])[0]
    env = {e.get("name"): e.get("value") for e in c.get("env", []) or []}
    return {
        "replicas": d.get("spec", {}).get("replicas"),
        "variant": ann.get(ANN_VARIANT),
        "batch": ann.get(ANN_BATCH),
        "shape": ann.get(ANN_SHAPE),
        "image": c.get("image"),
        "model_uri": env.get("MLSERVER_MODEL_URI"),
        "resources": c.get("resources"),
    }


def diff_stage(desired: Mapping[str, Any], observed: Mapping[str, Any] | None) -> StageChange:
    stage = desired["metadata"]["labels"][LABEL_STAGE]
    name = desired["metadata"]["name"]
    want, have = _view(desired), _view(observed)
    if observed is None:
        return StageChange(stage, name, CREATE, {k: (None, v) for k, v in want.items() if k != "resources"})
    changes = {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v}
    if not changes:
        return StageChange(stage, name, UNCHANGED)
    if "variant" in changes or "model_uri" in changes or "image" in changes:
        action = SWITCH
    elif set(changes) == {"replicas"}:
        action = SCALE_UP if (want["replicas"] or 0) > (have["replicas"] or 0) else SCALE_DOWN
    else:
        action = UPDATE
    return StageChange(stage, name, action, changes)


def diff(
    desired: list[Mapping[str, Any]], observed: Mapping[str, Mapping[str, Any] | None]
) -> list[StageChange]:
    """observed: Deployment name -> object (None when absent)."""
    return [diff_stage(d, observed.get(d["metadata"]["name"])) for d in desired]
