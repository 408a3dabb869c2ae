"""Reading the decisions experiment for the pipelines view, in a few requests per page.

One search finds the newest finished runs (and so the pipelines deciding now), one more the pipelines'
timeline runs (and so pipelines that decided earlier); a pipeline with fewer than `recent` decisions among
the newest gets its own search. Each decision.json is read once per process: a finished run's artifact
does not change. The running stages' profile runs cost one request each (a model version's tags, or a
search of the profiles experiment for zoo models).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from ..settings import DECISIONS_EXPERIMENT, PROFILES_EXPERIMENT
from .pipelines_view import (
    DecisionRun,
    MlflowLinks,
    Overview,
    ProfileRun,
    StageKey,
    by_pipeline,
    mlflow_ui_base,
    pipeline_view,
    running_decision,
    stage_keys,
)

log = logging.getLogger(__name__)

FINISHED = "attributes.status = 'FINISHED'"


class DecisionRuns:
    """The view's reader of one MLflow. Keep one per tracking URI: it caches the decision records."""

    def __init__(
        self,
        tracking_uri: str,
        *,
        experiment: str = DECISIONS_EXPERIMENT,
        profiles_experiment: str = PROFILES_EXPERIMENT,
        recent: int = 10,
        scan: int = 100,
        cache_size: int = 5000,
    ):
        self.tracking_uri, self.experiment, self.profiles_experiment = (
            tracking_uri,
            experiment,
            profiles_experiment,
        )
        self.recent, self.scan, self.cache_size = recent, scan, cache_size
        self._records: OrderedDict[str, DecisionRun | str] = OrderedDict()  # run id -> run, or why not
        self._lock = threading.Lock()

    @property
    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    def overview(self, ui_url: str | None = None) -> Overview:
        """Everything the view shows. Raises RegistryError (its message says what to do) when MLflow
        does not answer or refuses."""
        from ..registry.mlflow_profiles import mlflow_errors

        links = MlflowLinks(mlflow_ui_base(self.tracking_uri, ui_url))
        read_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        with mlflow_errors(self.tracking_uri, "read the decisions"):
            client = self.client
            exp = client.get_experiment_by_name(self.experiment)
            if exp is None:
                return Overview(
                    self.experiment,
                    None,
                    links.ui,
                    read_at,
                    (),
                    message=f"MLflow holds no experiment '{self.experiment}' yet: the ipa_adaptation DAG "
                    "writes one decision run per step there.",
                )
            runs, timelines, skipped = self._decision_runs(client, exp.experiment_id)
            grouped = by_pipeline(runs)
            for pipeline in timelines:
                grouped.setdefault(pipeline, [])
            profiles = self._profile_runs(client, grouped.values())
        views = tuple(
            pipeline_view(
                name,
                runs_of,
                profiles,
                links,
                recent=self.recent,
                timeline=(timelines[name], exp.experiment_id) if name in timelines else None,
            )
            for name, runs_of in sorted(grouped.items())
        )
        return Overview(
            self.experiment,
            links.experiment(exp.experiment_id),
            links.ui,
            read_at,
            views,
            tuple(skipped),
            "" if views else f"no decisions in '{self.experiment}' yet",
        )

    # ---- decisions ------------------------------------------------------------------------------------
    def _decision_runs(self, client, exp_id: str) -> tuple[list[DecisionRun], dict[str, str], list[str]]:
        newest = client.search_runs(
            [exp_id], filter_string=FINISHED, order_by=["attributes.start_time DESC"], max_results=self.scan
        )
        timelines = {
            r.data.tags["ipa.pipeline"]: r.info.run_id
            for r in client.search_runs(
                [exp_id], filter_string="tags.`ipa.kind` = 'timeline'", max_results=1000
            )
            if "ipa.pipeline" in r.data.tags
        }
        found = [r for r in newest if _is_decision(r)]
        counts: dict[str, int] = {}
        for r in found:
            counts[r.data.tags["ipa.pipeline"]] = counts.get(r.data.tags["ipa.pipeline"], 0) + 1
        # Pipelines that decided before the newest `scan` runs (or, in an old store, without a timeline).
        for pipeline in sorted(set(timelines) | set(counts)):
            if counts.get(pipeline, 0) < self.recent and len(newest) >= self.scan:
                found += [
                    r
                    for r in client.search_runs(
                        [exp_id],
                        filter_string=f"{FINISHED} and tags.`ipa.pipeline` = '{_quoted(pipeline)}'",
                        order_by=["attributes.start_time DESC"],
                        max_results=self.recent + 1,  # and the timeline run
                    )
                    if _is_decision(r)
                ]
        runs, skipped, seen = [], [], set()
        for r in found:
            if r.info.run_id in seen:
                continue
            seen.add(r.info.run_id)
            got = self._record(client, r.info.run_id, exp_id)
            if isinstance(got, str):
                skipped.append(f"run {r.info.run_id}: {got}")
            else:
                runs.append(got)
        return runs, timelines, skipped

    def _record(self, client, run_id: str, exp_id: str) -> DecisionRun | str:
        with self._lock:
            if run_id in self._records:
                return self._records[run_id]
        got = self._download(client, run_id, exp_id)
        with self._lock:
            self._records[run_id] = got
            while len(self._records) > self.cache_size:
                self._records.popitem(last=False)
        return got

    @staticmethod
    def _download(client, run_id: str, exp_id: str) -> DecisionRun | str:
        """The run's decision.json as a record, or why it cannot be read (shown, not raised: one bad run
        must not hide every pipeline)."""
        from mlflow.exceptions import MlflowException

        from ..control.record import DecisionRecord

        with tempfile.TemporaryDirectory() as tmp:
            try:
                path = Path(client.download_artifacts(run_id, "decision.json", tmp))
                data: Any = json.loads(path.read_text())
            except MlflowException as exc:
                return f"no decision.json ({exc.message})"
            except (OSError, ValueError) as exc:
                return f"decision.json unreadable ({exc})"
        try:
            return DecisionRun(run_id, exp_id, DecisionRecord.from_dict(data))
        except (ValueError, KeyError, TypeError) as exc:
            return f"decision.json is not a decision record this version reads ({exc})"

    # ---- profiles -------------------------------------------------------------------------------------
    def _profile_runs(self, client, grouped) -> dict[StageKey, ProfileRun]:
        keys = set()
        for runs_of in grouped:
            now, _ = running_decision(runs_of)
            if now is not None:
                keys.update(stage_keys(now))
        found: dict[StageKey, ProfileRun] = {}
        profiles_exp: list[str | None] = []
        for key in sorted(keys, key=lambda k: (k.model_ref, k.hardware, k.resources, k.dtype)):
            run = self._profile_run(client, key, profiles_exp)
            if run is not None:
                found[key] = run
        return found

    def _profile_run(self, client, key: StageKey, profiles_exp: list[str | None]) -> ProfileRun | None:
        """A registry version's tag names its profile run; a zoo model's is the newest finished run with
        its key in the profiles experiment."""
        from mlflow.exceptions import MlflowException

        from ..registry.mlflow_profiles import tag_safe

        if key.model_ref.startswith("models:/"):
            name, _, version = key.model_ref[len("models:/") :].partition("/")
            try:
                mv = client.get_model_version(name, version)
            except MlflowException:  # deleted since the decision: no link, not an error page
                return None
            run_id = mv.tags.get(f"ipa.profile.{key.hardware}.{tag_safe(key.resources)}.{key.dtype}.run_id")
            return ProfileRun(run_id, None, "model version tag") if run_id else None
        if not profiles_exp:
            exp = client.get_experiment_by_name(self.profiles_experiment)
            profiles_exp.append(exp.experiment_id if exp else None)
        if profiles_exp[0] is None:
            return None
        hits = client.search_runs(
            [profiles_exp[0]],
            filter_string=(
                f"{FINISHED} and tags.`ipa.model_ref` = '{_quoted(key.model_ref)}' "
                f"and tags.`ipa.hardware` = '{_quoted(key.hardware)}' "
                f"and tags.`ipa.resources` = '{_quoted(key.resources)}' "
                f"and tags.`ipa.dtype` = '{_quoted(key.dtype)}'"
            ),
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return ProfileRun(hits[0].info.run_id, profiles_exp[0], "profiles experiment") if hits else None


def _is_decision(run) -> bool:
    tags = run.data.tags
    return "ipa.pipeline" in tags and tags.get("ipa.kind", "decision") == "decision"


def _quoted(value: str) -> str:
    """A value inside an MLflow filter string's single quotes."""
    return value.replace("\\", "\\\\").replace("'", "\\'")
