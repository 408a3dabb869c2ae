"""Desired state: one Deployment per stage, rendered from the spec's template and the plan (the
encoder), and what runs read back from the Deployments (`observe`, the decoder). Pure but for observe's
reads."""

from __future__ import annotations

import copy
import json
from functools import lru_cache
from pathlib import Path
from typing import Any

from ..plans import Plan, StagePlan, check_plan_fits_spec
from ..spec import PipelineSpec, SpecError, Variant, deployment_name  # the rule lives with the spec
from ..userfiles import UserFileError, read_yaml

FIELD_MANAGER = "ipa-airflow"
LABEL_PIPELINE = "ipa.io/pipeline"
LABEL_STAGE = "ipa.io/stage"
ANN_PLAN = "ipa.io/plan-id"
ANN_VARIANT = "ipa.io/variant"
ANN_BATCH = "ipa.io/batch"
ANN_SHAPE = "ipa.io/shape"


class TemplateError(ValueError):
    """A deployment template that cannot produce a valid Deployment; nothing was applied."""


def default_template(spec: PipelineSpec) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {},
        "spec": {
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": {
                "metadata": {},
                "spec": {
                    "containers": [
                        {
                            "name": "model",
                            "image": spec.deployment.image,
                            "ports": [{"name": "http", "containerPort": spec.deployment.port}],
                        }
                    ],
                },
            },
        },
    }


def load_template(spec: PipelineSpec, base: Path | None = None) -> dict[str, Any]:
    if spec.deployment.template is not None:
        return copy.deepcopy(spec.deployment.template)
    if spec.deployment.template_file is not None:
        path = (base or Path.cwd()) / spec.deployment.template_file
        try:
            loaded = read_yaml(path)  # a repeated key is refused, not silently overridden
        except UserFileError as exc:
            raise SpecError(
                str(path), [("deployment.template_file", f"cannot read the template: {exc.problem}")]
            ) from None
        if not isinstance(loaded, dict):
            raise SpecError(str(path), [("deployment.template_file", "the template is not a mapping")])
        return loaded
    return default_template(spec)


def _set_env(container: dict[str, Any], values: dict[str, str]) -> None:
    env = [e for e in container.get("env", []) if e.get("name") not in values]
    env += [{"name": k, "value": v} for k, v in values.items()]
    container["env"] = env


def _resources(stage: StagePlan, variant: Variant) -> dict[str, Any]:
    kind, _, amount = stage.resources.partition("=")
    shape = next(
        (s for s in variant.shapes if s.resources.key == stage.resources and s.hardware == stage.hardware),
        None,
    )
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if kind == "gpu":
        limits["nvidia.com/gpu"] = amount
        requests["nvidia.com/gpu"] = amount
    else:
        requests["cpu"] = limits["cpu"] = amount
    if shape is not None and shape.resources.memory_gb:
        requests["memory"] = limits["memory"] = f"{shape.resources.memory_gb:g}Gi"
    return {"requests": requests, "limits": limits}


def render_stage(
    spec: PipelineSpec, plan: Plan, stage: StagePlan, template: dict[str, Any]
) -> dict[str, Any]:
    variant = next(v for v in spec.stage(stage.stage).variants if v.name == stage.variant)
    name = deployment_name(spec.name, stage.stage)
    selector = {LABEL_PIPELINE: spec.name, LABEL_STAGE: stage.stage}  # never changes between variants
    d = copy.deepcopy(template)
    d["apiVersion"], d["kind"] = "apps/v1", "Deployment"
    meta = d.setdefault("metadata", {})
    meta["name"], meta["namespace"] = name, spec.namespace
    meta.setdefault("labels", {}).update({**selector, "app.kubernetes.io/managed-by": FIELD_MANAGER})
    meta.setdefault("annotations", {}).update(
        {
            ANN_PLAN: plan.plan_id,
            ANN_VARIANT: stage.variant,
            ANN_BATCH: str(stage.batch),
            ANN_SHAPE: f"{stage.hardware} {stage.resources} {stage.dtype}",
        }
    )
    body = d.setdefault("spec", {})
    body["replicas"] = stage.replicas
    body["selector"] = {"matchLabels": dict(selector)}
    body.setdefault(
        "strategy", {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}}
    )
    pod = body.setdefault("template", {})
    pod.setdefault("metadata", {}).setdefault("labels", {}).update({**selector, ANN_VARIANT: stage.variant})
    containers = pod.setdefault("spec", {}).setdefault("containers", [])
    if not containers:
        raise TemplateError(f"deployment template for stage '{stage.stage}' has no container")
    c = containers[0]
    if variant.image:
        c["image"] = variant.image
    c.setdefault("image", spec.deployment.image)
    _set_env(
        c,
        {
            "MLSERVER_MODEL_NAME": stage.stage,
            "MLSERVER_MODEL_URI": variant.model_uri or f"zoo:{variant.profile_model}",
            "MLSERVER_MODEL_IMPLEMENTATION": "mlserver_mlflow.MLflowRuntime",
            "MLSERVER_MODEL_MAX_BATCH_SIZE": str(stage.batch),
            "MLSERVER_MODEL_MAX_BATCH_TIME": f"{stage.queue_s:.4f}",
            "IPA_VARIANT": stage.variant,
        },
    )
    c["resources"] = _resources(stage, variant)
    # Ready only once the model is loaded, so a variant switch never routes traffic to an empty server.
    c.setdefault(
        "readinessProbe",
        {
            "httpGet": {"path": f"/v2/models/{stage.stage}/ready", "port": spec.deployment.port},
            "periodSeconds": 5,
            "failureThreshold": 3,
        },
    )
    return d


def desired_state(plan: Plan, spec: PipelineSpec, *, base: Path | None = None) -> list[dict[str, Any]]:
    """Every stage's Deployment for this plan, validated against the official schema. A plan that asks
    for anything the spec does not offer (stage, variant, shape, batch size) is refused first."""
    check_plan_fits_spec(plan, spec)
    template = load_template(spec, base)
    manifests = [render_stage(spec, plan, s, template) for s in plan.stages]
    for m in manifests:
        validate_manifest(m)
    return manifests


def validate_manifest(manifest: dict[str, Any]) -> None:
    """Check the Deployment against the official schema. Slow (tens of ms), and a simulation renders
    thousands: manifests that differ only in values this module writes with a fixed type (replicas,
    our annotations, our environment variables) validate alike, so each such family is checked once."""
    _validate(json.dumps(_schema_view(manifest), sort_keys=True))


@lru_cache(maxsize=1024)
def _validate(text: str) -> None:  # raising is not cached: a bad manifest is checked (and named) each time
    import kubernetes_validate

    manifest = json.loads(text)
    try:
        kubernetes_validate.validate(manifest, kubernetes_validate.latest_version(), strict=True)
    except kubernetes_validate.ValidationError as exc:
        path = ".".join(str(p) for p in exc.path)
        raise TemplateError(
            f"Deployment {manifest['metadata'].get('name')} is invalid at {path or '<root>'}: {exc.message}"
        ) from None


_OUR_ENV = {
    "MLSERVER_MODEL_NAME",
    "MLSERVER_MODEL_URI",
    "MLSERVER_MODEL_MAX_BATCH_SIZE",
    "MLSERVER_MODEL_MAX_BATCH_TIME",
    "IPA_VARIANT",
}
_OUR_ANNOTATIONS = (ANN_PLAN, ANN_VARIANT, ANN_BATCH, ANN_SHAPE)


def _schema_view(manifest: dict[str, Any]) -> dict[str, Any]:
    """The manifest with the plan's values replaced by placeholders of the same type: what the schema
    sees of it. The template's own fields (and any value a user wrote) are kept as they are."""
    view = copy.deepcopy(manifest)
    annotations = view.get("metadata", {}).get("annotations") or {}
    for key in _OUR_ANNOTATIONS:
        if isinstance(annotations.get(key), str):
            annotations[key] = ""
    body = view.get("spec") or {}
    if isinstance(body.get("replicas"), int) and not isinstance(body.get("replicas"), bool):
        body["replicas"] = 1
    for c in ((body.get("template") or {}).get("spec") or {}).get("containers") or []:
        for e in c.get("env") or []:
            if e.get("name") in _OUR_ENV and isinstance(e.get("value"), str):
                e["value"] = ""
    return view


# ---- the decoder: what runs, from the Deployments the encoder wrote --------------------------------------
def decode_stage(stage: str, obj: dict[str, Any] | None) -> tuple | None:
    """A stage's `StagePlan.config_key` from its Deployment (None when absent or without the annotations
    `render_stage` writes)."""
    ann = (obj or {}).get("metadata", {}).get("annotations") or {}
    if obj is None or not all(k in ann for k in (ANN_VARIANT, ANN_BATCH, ANN_SHAPE)):
        return None
    hardware, resources, dtype = ann[ANN_SHAPE].split(" ")
    replicas = int(obj.get("spec", {}).get("replicas") or 0)
    return (stage, ann[ANN_VARIANT], hardware, resources, dtype, int(ann[ANN_BATCH]), replicas)


def max_batch_time_s(obj: dict[str, Any]) -> float:
    """How long the model server waits to fill a batch, as the Deployment tells it (0 when unset)."""
    return float(_env(obj).get(BATCH_TIME_ENV) or 0.0)


BATCH_TIME_ENV = "MLSERVER_MODEL_MAX_BATCH_TIME"


def keep_running_batch_time(desired: dict[str, Any], observed: dict[str, Any] | None) -> dict[str, Any]:
    """The desired Deployment with the running batch time when only its replicas change.

    The planner derives the batch time from the load it planned for, so every new load gives a new value;
    in the pod template, that would make each scale-up or scale-down a rolling restart of every pod. The
    running value is safe to keep: with the same variant, batch and shape it met the SLA when its plan was
    made, and the wait a request sees is the shorter of that timeout and the time a batch takes to fill,
    which only shrinks as load grows."""
    want, have = decode_stage("", desired), decode_stage("", observed)
    if observed is None or want is None or have is None or want[1:-1] != have[1:-1]:  # a new config
        return desired
    running = _env(observed).get(BATCH_TIME_ENV)
    if running is None:
        return desired
    out = copy.deepcopy(desired)
    for e in out["spec"]["template"]["spec"]["containers"][0].get("env") or []:
        if e.get("name") == BATCH_TIME_ENV:
            e["value"] = running  # in place: the order of env entries is part of the pod template
    return out


def _env(obj: dict[str, Any]) -> dict[str, Any]:
    containers = ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or [{}]
    return {e.get("name"): e.get("value") for e in containers[0].get("env") or []}


def observe(spec: PipelineSpec, backend) -> tuple[tuple, ...] | None:
    """What each stage runs now, as `StagePlan.config_key`s read from its Deployment; None when a stage
    has no Deployment, or one without the annotations the reconciler writes. A Plan running this
    configuration has the id `plans.config_id(spec.name, ...)`: computed from what each stage runs
    rather than read from the plan-id annotation, which only stages that changed carry forward."""
    config = []
    for stage in spec.stage_names:
        key = decode_stage(stage, backend.get(spec.namespace, deployment_name(spec.name, stage)))
        if key is None:
            return None
        config.append(key)
    return tuple(config)
