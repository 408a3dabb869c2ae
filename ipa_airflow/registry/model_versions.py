"""Model versions as MLflow holds them: the versions a stage's selector may pick, with their tags, aliases
and source-run metrics (`candidates.RegisteredVersion`), and the tags the SLO gate writes on them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from ..candidates import RegisteredVersion, selected
from ..spec import RegisteredModel
from .mlflow_profiles import MlflowProfileRegistry, MlflowUnreachable, RegistryError

NEWEST_READ = 20  # the newest versions whose source runs are read for an accuracy metric


def read_versions(registry: MlflowProfileRegistry, source: RegisteredModel) -> list[RegisteredVersion]:
    """Every version of the source's registered model that its selector could pick; the source run's
    metrics only when the accuracy comes from one. A registered model that does not exist is an error
    that says so (an empty list would silently plan without the stage's registry variants)."""
    client, name = registry.client, source.name
    found = registry._call(f"list the versions of '{name}'", client.search_model_versions, f"name='{name}'")
    if not found:
        raise RegistryError(
            f"MLflow has no versions of the registered model '{name}' (named by a stage's registered_model); "
            "register one, or fix the name"
        )
    aliases: dict[str, list[str]] = {}
    for alias in source.select.aliases:
        try:
            mv = registry._call(f"resolve alias '{alias}'", client.get_model_version_by_alias, name, alias)
        except MlflowUnreachable:
            raise
        except RegistryError:
            continue  # an alias not set (yet) selects nothing
        aliases.setdefault(str(mv.version), []).append(alias)
    versions = [
        RegisteredVersion(
            name=name,
            version=str(mv.version),
            aliases=tuple(aliases.get(str(mv.version), ())),
            tags=dict(mv.tags or {}),
            run_id=mv.run_id or None,
        )
        for mv in found
    ]
    if source.accuracy.metric is None:
        return versions
    # The runs of the versions the selector could pick: those an alias or the tag names, and the newest
    # ones (the newest N that can run may lie below newer ones that cannot).
    explicit = source.select.model_copy(update={"newest": None})
    wanted = {v.version for v in selected(explicit, versions)[0]}
    wanted |= {v.version for v in sorted(versions, key=lambda v: int(v.version), reverse=True)[:NEWEST_READ]}
    out = []
    for v in versions:
        if v.version in wanted and v.run_id:
            try:
                run = registry._call(f"read the source run of {name} v{v.version}", client.get_run, v.run_id)
                v = replace(v, run_metrics=dict(run.data.metrics))
            except MlflowUnreachable:
                raise
            except RegistryError:  # the run was deleted or is elsewhere: no accuracy, and accuracy_of says so
                pass
        out.append(v)
    versions = out
    return versions
    picked = {v.version for v in selected(source.select, versions)}  # read the runs of these only
    out = []
    for v in versions:
        if v.version in picked and v.run_id:
            run = registry._call(f"read the source run of {name} v{v.version}", client.get_run, v.run_id)
            v = replace(v, run_metrics=dict(run.data.metrics))
        out.append(v)
    versions = out
    return versions


def set_version_tags(
    registry: MlflowProfileRegistry, name: str, version: str, tags: Mapping[str, str]
) -> None:
    for key, value in tags.items():
        registry._call(
            "tag the model version", registry.client.set_model_version_tag, name, version, key, value
        )
