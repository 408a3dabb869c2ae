"""Which versions of a registered model a stage may run: the pure part of reading variants from MLflow.

A stage that names a `registered_model` gets one variant per selected version (`RegisteredModel.select`).
A version is a candidate only with an accuracy (from the tag or run metric the spec names) and without a
failed SLO gate for this pipeline; a candidate without a profile on any of the stage's shapes waits for
its profiling. Every version looked at gets a `Candidate` saying which and why, for the decision record.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .spec import AccuracySource, RegisteredModel, Variant, VersionSelector

GATE_TAG = "ipa.gate"  # 'ipa.gate.<pipeline>' = 'pass' | 'fail'; details under 'ipa.gate.<pipeline>.*'


def gate_tag(pipeline: str) -> str:
    return f"{GATE_TAG}.{pipeline}"


@dataclass(frozen=True)
class RegisteredVersion:
    """What MLflow says of one model version (read by `registry.model_versions`)."""

    name: str
    version: str
    aliases: tuple[str, ...] = ()
    tags: Mapping[str, str] = field(default_factory=dict)
    run_id: str | None = None
    run_metrics: Mapping[str, float] = field(default_factory=dict)  # of its source run

    @property
    def model_uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


Status = Literal["candidate", "excluded", "unprofiled"]


@dataclass(frozen=True)
class Candidate:
    stage: str
    variant: str
    model_uri: str
    status: Status
    reason: str = ""
    accuracy: float | None = None  # in percent, as a variant's

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "variant": self.variant,
            "model_uri": self.model_uri,
            "status": self.status,
            "reason": self.reason,
            "accuracy": self.accuracy,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Candidate:
        return cls(
            stage=str(d["stage"]),
            variant=str(d["variant"]),
            model_uri=str(d["model_uri"]),
            status=d["status"],
            reason=str(d.get("reason", "")),
            accuracy=None if d.get("accuracy") is None else float(d["accuracy"]),
        )

    def describe(self) -> str:
        what = f"{self.stage}: {self.variant} ({self.model_uri})"
        return what if self.status == "candidate" else f"{what} {self.status}: {self.reason}"


def selected(
    selector: VersionSelector,
    versions: Sequence[RegisteredVersion],
    can_run: Callable[[RegisteredVersion], bool] = lambda v: True,
) -> tuple[list[RegisteredVersion], list[RegisteredVersion]]:
    """The versions the selector picks, newest first: every version an alias names or with the tag, and
    the newest N that `can_run` (an accuracy, no failed gate, a profile): a version registered a minute
    ago and not yet profiled must not push the last one that runs out of the stage. Also the versions
    newer than the N-th pick that cannot run (passed over), so the decision can say why."""
    ordered = sorted(versions, key=lambda v: int(v.version), reverse=True)
    picked: dict[str, RegisteredVersion] = {}
    if selector.tag is not None:
        key, _, value = selector.tag.partition("=")
        picked.update((v.version, v) for v in ordered if v.tags.get(key) == value)
    for alias in selector.aliases:
        picked.update((v.version, v) for v in ordered if alias in v.aliases)
    passed_over = []
    if selector.newest:
        runnable = 0
        for v in ordered:
            if runnable == selector.newest:
                break
            if v.version in picked:
                runnable += can_run(v)
            elif can_run(v):
                picked[v.version] = v
                runnable += 1
            else:
                passed_over.append(v)
    return [v for v in ordered if v.version in picked], passed_over


def accuracy_of(source: AccuracySource, version: RegisteredVersion) -> tuple[float | None, str]:
    """The version's accuracy in percent, or None and why there is none."""
    raw: str | float | None = version.tags.get(source.tag) if source.tag is not None else None
    if source.metric is not None:
        raw = version.run_metrics.get(source.metric)
        if version.run_id is None:
            return None, f"no accuracy: the version has no source run to read the {source.label} from"
    if raw is None:
        return None, f"no accuracy: no {source.label}; set it, or name another in the spec's accuracy"
    try:
        value = float(raw)
    except ValueError:
        return None, f"no accuracy: the {source.label} is {raw!r}, not a number"
    percent = value * 100 if source.scale == "fraction" else value
    if not 0 <= percent <= 100 or percent != percent:
        top = "1" if source.scale == "fraction" else "100"
        return (
            None,
            f"no accuracy: the {source.label} is {raw}, outside 0..{top} (accuracy.scale: {source.scale})",
        )
    return percent, ""


def registry_variants(
    pipeline: str, stage: str, source: RegisteredModel, versions: Sequence[RegisteredVersion]
) -> tuple[list[Variant], list[Candidate]]:
    """These versions as variants of `stage` (every shape of the source), and a Candidate for each,
    excluded ones with their reason. Which versions: `selected`; profiles are matched by `pipelines`."""
    variants, seen = [], []
    for version in versions:
        name = source.variant_name(version.version)
        accuracy, problem = accuracy_of(source.accuracy, version)
        if accuracy is None:
            seen.append(Candidate(stage, name, version.model_uri, "excluded", problem))
            continue
        if version.tags.get(gate_tag(pipeline)) == "fail":
            why = version.tags.get(f"{gate_tag(pipeline)}.reason", "see the version's ipa.gate tags")
            seen.append(
                Candidate(stage, name, version.model_uri, "excluded", f"failed the SLO gate: {why}", accuracy)
            )
            continue
        variants.append(
            Variant(
                name=name,
                accuracy=accuracy,
                metric=source.accuracy.metric or source.accuracy.tag or "accuracy",
                model_uri=version.model_uri,
                image=source.image,
                startup_s=source.startup_s,
                shapes=list(source.shapes),
            )
        )
        seen.append(Candidate(stage, name, version.model_uri, "candidate", "", accuracy))
    return variants, seen
