"""Finding registered model versions that were never profiled (for setups without webhooks)."""

from __future__ import annotations


def unprofiled_versions(
    registry, hardware: str | None = None, *, max_versions: int = 200
) -> list[dict[str, str]]:
    """Versions with no profile tag on `hardware` (None: on any hardware)."""
    prefix = f"ipa.profile.{hardware}." if hardware else "ipa.profile."
    versions = registry._call(
        "list model versions", registry.client.search_model_versions, "", max_results=max_versions
    )
    return [
        {"name": v.name, "version": str(v.version)}
        for v in versions
        if not any(k.startswith(prefix) and k.endswith(".run_id") for k in (v.tags or {}))
        and not v.name.startswith("ipa-")  # our own forecasters are not served by pipelines
    ]
