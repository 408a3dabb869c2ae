"""MLflow as the profile registry.

Each profile is one run in the profiles experiment: params (what was measured and how), one metric
series per quantity with step = batch size (the MLflow UI draws the curve), the profile as JSON, CSV and
an MLflow table, a PNG plot, and tags that carry the staleness key. A registered model version gets
tags summarising its profile per hardware so its page in the MLflow UI shows it.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..profiles import Profile, ProfileError, ProfileSet
from ..spec import PipelineSpec
from .keys import ProfileKey

if TYPE_CHECKING:  # mlflow is an extra: imported where it is used
    from mlflow import MlflowClient

log = logging.getLogger(__name__)

PROFILES_EXPERIMENT_NOTE = (
    "One run per profile: a model (version) measured on one hardware kind, resource shape and dtype. "
    "The metrics p50_ms, p95_ms, p99_ms, mean_ms and throughput_rps have the **batch size as their step**: "
    "chart them against the step to see latency and throughput against batch size. The tags "
    "ipa.model_ref, ipa.hardware, ipa.resources, ipa.dtype and ipa.runtime say what was measured; "
    "profile.json is what the planner reads."
)
METRICS = ("p50_ms", "p95_ms", "p99_ms", "mean_ms", "throughput_rps", "cv", "peak_memory_mb")


class RegistryError(ProfileError):
    """MLflow could not be reached, or holds no usable profile; the message says what to do."""


class MlflowUnreachable(RegistryError):
    """MLflow did not answer (as opposed to answering no)."""


def use_client_defaults() -> None:
    """Fail fast when MLflow is down instead of retrying for minutes, and keep its "View run" links off
    stdout: settings.MLFLOW_CLIENT_DEFAULTS, for each variable the user did not set. MLflow's HTTP client
    reads only these variables (at each request), so this is how they reach it; it runs where a client is
    made (here, `registry_for`, `MlflowProfileRegistry.client`), never at import."""
    from ..settings import MLFLOW_CLIENT_DEFAULTS

    for name, value in MLFLOW_CLIENT_DEFAULTS.items():
        os.environ.setdefault(name, value)


@contextmanager
def mlflow_errors(tracking_uri: str, what: str) -> Iterator[None]:
    """MLflow's failures inside the block as a RegistryError that says whether MLflow was down or
    refused, and what to do."""
    from mlflow.exceptions import MlflowException

    use_client_defaults()
    try:
        yield
    except (MlflowException, OSError) as exc:  # requests' ConnectionError is an OSError
        if isinstance(exc, MlflowException) and not _unreachable(exc):
            raise RegistryError(f"MLflow at {tracking_uri} refused to {what}: {exc.message}") from exc
        raise MlflowUnreachable(
            f"cannot reach MLflow at {tracking_uri} to {what}; "
            "start the server or set MLFLOW_TRACKING_URI / --tracking-uri"
        ) from exc


def check_reachable(tracking_uri: str) -> None:
    """Raise a RegistryError now, before long work whose result would go to MLflow, if it is down."""
    from mlflow import MlflowClient

    with mlflow_errors(tracking_uri, "list its experiments"):
        MlflowClient(tracking_uri=tracking_uri).search_experiments(max_results=1)


def tag_safe(resources: str) -> str:
    return resources.replace("=", "")


class MlflowProfileRegistry:
    def __init__(
        self,
        tracking_uri: str,
        *,
        experiment: str = "ipa-profiles",
        artifact_root: str | None = None,
        method: str = "in-process",
    ):
        self.tracking_uri = tracking_uri
        self.experiment = experiment
        self.artifact_root = artifact_root
        # Which profiles the readers below take when a model version has both: in-process (a bare model
        # call, the default) or served (through MLServer: what a pipeline of real replicas plans on).
        self.method = method
        self._client: MlflowClient | None = None
        self._experiment_id: str | None = None

    @property
    def client(self):
        if self._client is None:
            from mlflow import MlflowClient

            use_client_defaults()
            self._client = MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri)
        return self._client

    def _call(self, what: str, fn, *args, **kwargs):
        with mlflow_errors(self.tracking_uri, what):
            return fn(*args, **kwargs)

    def experiment_id(self) -> str:
        if self._experiment_id is None:
            exp = self._call("read the experiment", self.client.get_experiment_by_name, self.experiment)
            if exp is not None:
                self._experiment_id = exp.experiment_id
            else:
                self._experiment_id = self._call(
                    "create the profiles experiment",
                    self.client.create_experiment,
                    self.experiment,
                    artifact_location=self.artifact_root,
                    tags={"ipa.kind": "profiles", "mlflow.note.content": PROFILES_EXPERIMENT_NOTE},
                )
        return self._experiment_id

    def run_url(self, run_id: str) -> str | None:
        """The profile run's page in the MLflow UI, when the tracking URI is a server's (else None)."""
        if not self.tracking_uri.startswith(("http://", "https://")):
            return None
        return f"{self.tracking_uri.rstrip('/')}/#/experiments/{self.experiment_id()}/runs/{run_id}"

    # ---- model references --------------------------------------------------------------------------
    def resolve_model_ref(self, model_uri: str) -> tuple[str, str, str]:
        """'models:/name/3', 'models:/name@alias' or 'models:/name/latest' -> (ref, name, version)."""
        if not model_uri.startswith("models:/"):
            raise RegistryError(f"'{model_uri}' is not a registered model URI (models:/<name>/<version>)")
        rest = model_uri[len("models:/") :]
        if "@" in rest:
            name, alias = rest.split("@", 1)
            mv = self._call(f"resolve alias {alias}", self.client.get_model_version_by_alias, name, alias)
            version = mv.version
        else:
            name, _, version = rest.partition("/")
            if version in ("", "latest"):
                versions = self._call(
                    f"list versions of {name}", self.client.search_model_versions, f"name='{name}'"
                )
                if not versions:
                    raise RegistryError(f"registered model '{name}' has no versions")
                version = str(max(int(v.version) for v in versions))
        return f"models:/{name}/{version}", name, str(version)

    # ---- writing -----------------------------------------------------------------------------------
    def log_profile(self, profile: Profile, key: ProfileKey, *, params: dict | None = None) -> str:
        """One run holding the whole profile; returns its run id."""
        env = profile.provenance.get("environment", {})
        tags = {
            **key.to_tags(),
            "ipa.profile_id": profile.id,
            "ipa.device_name": str(env.get("gpu") or env.get("cpu", "")),
            "mlflow.runName": f"profile {profile.model} on {profile.hardware} {profile.resources}",
        }
        run = self._call("create a profile run", self.client.create_run, self.experiment_id(), tags=tags)
        run_id = run.info.run_id
        try:
            self._fill_profile_run(run_id, profile, params)
        except RegistryError:
            # Readers take FINISHED runs only; mark this one FAILED if MLflow still answers, so nobody
            # mistakes it for a profile in progress. The caller keeps the profile on disk to file again.
            try:
                self.client.set_terminated(run_id, "FAILED")
            except Exception:  # noqa: BLE001 - MLflow is failing already; the first error is the one to report
                log.debug("could not mark the unfinished profile run %s as failed", run_id)
            raise
        return run_id

    def _fill_profile_run(self, run_id: str, profile: Profile, params: dict | None) -> None:
        from mlflow.entities import Metric, Param

        curve = profile.curve("p99")
        all_params = {
            "model": profile.model,
            "hardware": profile.hardware,
            "dtype": profile.dtype,
            "resources": profile.resources,
            "batch_sizes": ",".join(str(b) for b in profile.measured_batches),
            **{k: str(v) for k, v in (params or {}).items()},
        }
        now_ms = int(time.time() * 1000)
        metrics = []
        for p in profile.points:
            for name in METRICS:
                value = getattr(p, name, None)
                if value is not None:
                    metrics.append(Metric(name, float(value), now_ms, p.batch))
        first = profile.points[0]
        summary = {
            "b1_p99_ms": first.p99_ms if first.batch == 1 else None,
            "best_throughput_rps": max(p.throughput_rps for p in profile.points),
            "curve_p99_max_rel_error": curve.max_rel_error,
        }
        metrics += [Metric(k, float(v), now_ms, 0) for k, v in summary.items() if v is not None]
        self._call(
            "log the profile",
            self.client.log_batch,
            run_id,
            metrics=metrics,
            params=[Param(k, v) for k, v in all_params.items()],
        )
        with tempfile.TemporaryDirectory() as tmp:
            self._write_artifacts(profile, Path(tmp))
            self._call("upload the profile artifacts", self.client.log_artifacts, run_id, tmp)
        self._call(
            "log the profile table", self.client.log_table, run_id, _table(profile), "profile_table.json"
        )
        self._call("finish the run", self.client.set_terminated, run_id)

    @staticmethod
    def _write_artifacts(profile: Profile, folder: Path) -> None:
        from ..reports.profile_plot import plot_profile

        (folder / "profile.json").write_text(json.dumps(profile.to_dict(), indent=1))
        rows = ["batch,p50_ms,p95_ms,p99_ms,mean_ms,throughput_rps,cv,peak_memory_mb"]
        for p in profile.points:
            rows.append(
                ",".join(
                    str(v)
                    for v in (
                        p.batch,
                        p.p50_ms,
                        p.p95_ms,
                        p.p99_ms,
                        p.mean_ms,
                        p.throughput_rps,
                        p.cv,
                        p.peak_memory_mb,
                    )
                )
            )
        (folder / "profile.csv").write_text("\n".join(rows) + "\n")
        plot_profile(profile, folder / "latency_throughput.png")

    def tag_model_version(
        self, name: str, version: str, profile: Profile, key: ProfileKey, run_id: str
    ) -> None:
        """Summarise the profile on the model version's page: batch-1 p99, best throughput, the run."""
        prefix = f"ipa.profile.{profile.hardware}.{tag_safe(profile.resources)}.{profile.dtype}"
        first = profile.points[0]
        tags = {
            f"{prefix}.b1_p99_ms": f"{first.p99_ms:.4g}" if first.batch == 1 else "n/a",
            f"{prefix}.best_throughput_rps": f"{max(p.throughput_rps for p in profile.points):.5g}",
            f"{prefix}.run_id": run_id,
            # The run itself, one click from the version's page (tags are text: a full URL is a link).
            **({f"{prefix}.run_url": self.run_url(run_id)} if self.run_url(run_id) else {}),
            f"{prefix}.staleness_key": key.digest,
            f"{prefix}.runtime": key.runtime,
        }
        for k, v in tags.items():
            self._call("tag the model version", self.client.set_model_version_tag, name, version, k, v)

    # ---- reading -----------------------------------------------------------------------------------
    def latest(
        self, key: ProfileKey, *, check_runtime: bool = True, method: str | None = None
    ) -> tuple[Profile, str]:
        """The newest profile matching `key` (the runtime too unless check_runtime is False) measured by
        `method` (default: the registry's), as its run's param says (runs filed before served profiling
        existed are in-process). A served profile (`ipa profile --served`) is filed beside the in-process
        one of the same version and shape, never in its place: a reader takes one kind or the other."""
        method = method or self.method
        filt = (
            f"tags.`ipa.model_ref` = '{key.model_ref}' and tags.`ipa.hardware` = '{key.hardware}' "
            f"and tags.`ipa.dtype` = '{key.dtype}' and tags.`ipa.resources` = '{key.resources}'"
        )
        runs = self._call(
            "search profiles",
            self.client.search_runs,
            [self.experiment_id()],
            filter_string=filt,
            order_by=["attributes.start_time DESC"],
            max_results=50,
        )
        stale, other_method = [], []
        for run in runs:
            if run.info.status != "FINISHED":
                continue
            if run.data.params.get("method", "in-process") != method:
                other_method.append(run.info.run_id)
                continue
            found = ProfileKey.from_tags(run.data.tags)
            if check_runtime and found.runtime != key.runtime:
                stale.append((run.info.run_id, found))
                continue
            return self._download(run.info.run_id), run.info.run_id
        what = f"{key.model_ref} on {key.hardware} ({key.resources}, {key.dtype})"
        if stale:
            run_id, found = stale[0]
            raise RegistryError(
                f"the profiles of {what} are stale: the newest (run {run_id}) has "
                f"{'; '.join(key.differences(found))}. Re-profile it with `ipa profile` on that hardware."
            )
        kind = "" if method == "in-process" else f"{method} "
        note = f" (only profiles measured otherwise, such as run {other_method[0]})" if other_method else ""
        flag = " --served" if method == "served" else ""
        raise RegistryError(
            f"MLflow holds no {kind}profile of {what}{note}. Profile it with `ipa profile{flag}`."
        )

    def find_profile(self, model_uri: str, shape) -> Profile | None:
        """The newest profile of a model version on a spec's shape (any runtime), or None when MLflow holds
        none: a registry variant without one waits for its profiling. MlflowUnreachable goes up."""
        key = ProfileKey(model_uri, shape.hardware, shape.dtype, shape.resources.key, "")
        try:
            return self.latest(key, check_runtime=False)[0]
        except MlflowUnreachable:
            raise
        except RegistryError:
            return None

    def _download(self, run_id: str) -> Profile:
        with tempfile.TemporaryDirectory() as tmp:
            path = self._call(
                "download a profile", self.client.download_artifacts, run_id, "profile.json", tmp
            )
            return Profile.from_dict(json.loads(Path(path).read_text()))

    def profiles_for_spec(
        self, spec: PipelineSpec, *, runtime: str | None = None, only: Sequence[str] | None = None
    ) -> ProfileSet:
        """The newest non-stale profile of every (variant, shape) of the spec, keyed as the spec names them.

        Variants with a model_uri are looked up by that model version, the others as zoo models.
        With runtime=None the runtime is not checked (any runtime the registry holds is accepted).
        """
        found: dict[str, Profile] = {}
        for stage in spec.stages:
            for variant in stage.variants:
                ref = (
                    self.resolve_model_ref(variant.model_uri)[0]
                    if variant.model_uri
                    else f"zoo:{variant.profile_model}"
                )
                for shape in variant.shapes:
                    pid = variant.profile_id(shape)
                    if only is not None and pid not in only:
                        continue
                    key = ProfileKey(ref, shape.hardware, shape.dtype, shape.resources.key, runtime or "")
                    profile, _ = self.latest(key, check_runtime=runtime is not None)
                    found[pid] = replace(profile, model=variant.profile_model)
        return ProfileSet(found)


def registry_for(tracking_uri: str | None = None, *, method: str = "in-process") -> MlflowProfileRegistry:
    """The profile registry on `tracking_uri` (default: settings), reading profiles measured by `method`
    (in-process or served). A local store keeps its artifacts under IPA_HOME; a server decides where its
    artifacts go."""
    from ..settings import load_settings

    use_client_defaults()  # callers log to MLflow through the URI (decisions, forecasters) as well
    settings = load_settings(tracking_uri=tracking_uri)
    uri = settings.mlflow.tracking_uri
    local = uri.startswith(("sqlite:", "file:")) or "://" not in uri
    if uri.startswith("sqlite:"):
        settings.home.mkdir(parents=True, exist_ok=True)
    return MlflowProfileRegistry(
        uri,
        experiment=settings.mlflow.profiles_experiment,
        artifact_root=settings.mlflow.artifact_root if local else None,
        method=method,
    )


def _unreachable(exc: Exception) -> bool:
    # The client wraps connection failures in MlflowException; the cause or the text tells them apart.
    cause = exc.__cause__ or exc.__context__
    text = str(exc)
    return isinstance(cause, OSError) or "Max retries exceeded" in text or "Failed to establish" in text


def _table(profile: Profile) -> dict[str, list]:
    return {
        "batch": [p.batch for p in profile.points],
        "p50_ms": [p.p50_ms for p in profile.points],
        "p95_ms": [p.p95_ms for p in profile.points],
        "p99_ms": [p.p99_ms for p in profile.points],
        "throughput_rps": [p.throughput_rps for p in profile.points],
    }
