"""The IPA authors' own measurements of their five pipelines, turned into this project's profile files and
pipeline specs (`ipa profiles import-paper`).

Two inputs, both from the authors' artifact (see shared/data/README.md): a JSONL of profiling runs (one
model pod at a static load, per core count and batch size) and a JSON of the settings their final
experiments used. Nothing is fitted or re-measured: each profile point is one run's model-side latency
statistics and its served throughput, at the load the authors' optimizer read, with the run it came from.

Where the authors' formulation maps onto a spec field it is encoded there; docs/evaluation.md lists each
mapping and what the spec cannot say.
"""

from __future__ import annotations

import gzip
import json
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..profiles import BatchPoint, Profile, ProfileSet

HARDWARE = "xeon-gold-6126"  # the CPU the authors profiled on (their final runs logged Xeon Gold 6240R)
# The artifact names Hugging Face models '<org>-<name>' ('/' replaced by '-'); a variant keeps the name part.
_ORGS = ("facebook", "deepset", "Souvikcmsa", "sshleifer", "Helsinki-NLP", "dinalzein", "huggingface")
# node -> (task, the metric its variants' accuracy is in; the settings file spells each one out)
_NODES = {
    "yolo": ("detection", "coco_box_map50"),
    "resnet-human": ("classification", "imagenet_top1"),
    "audio": ("speech-recognition", "asr_100_minus_wer"),  # the zoo's metric names, where it has the model
    "nlp-qa": ("question-answering", "squad2_f1"),
    "nlp-sent": ("text-classification", "sentiment_accuracy"),
    "nlp-sum": ("summarization", "xsum_rougeL"),
    "nlp-li": ("language-identification", "langid_accuracy"),
    "nlp-trans": ("translation", "bleu_newsdiscussdev2015"),
}


class PaperDataError(ValueError):
    """The input is not the authors' data as shared/data/README.md describes it; says which file and what."""


@dataclass(frozen=True)
class PaperPipeline:
    """One converted pipeline: its spec (a dict ready for YAML), its profiles and what was left out."""

    name: str
    spec: dict[str, Any]
    profiles: ProfileSet
    skipped: tuple[str, ...]  # runs without a latency or throughput at the load the optimizer read
    setting: Mapping[str, Any]  # the SLA and base-allocation group the spec encodes (main_setting)


def read_runs(path: str | Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The profiling file's header (provenance, columns, series) and its runs."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt") as fh:
            lines = [json.loads(line) for line in fh if line.strip()]
    except (OSError, EOFError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PaperDataError(f"cannot read {path}: {exc}") from None
    if not lines or "series" not in lines[0] or any("series" not in r or "model" not in r for r in lines[1:]):
        raise PaperDataError(
            f"{path} is not the IPA authors' profiling runs: expected a header line with 'series' and then "
            "one run per line with 'series', 'model', 'cpu', 'batch' and 'load_rps' (shared/data/README.md)"
        )
    return lines[0], lines[1:]


def read_settings(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise PaperDataError(f"cannot read {path}: {exc}") from None
    if not isinstance(data, dict) or not isinstance(data.get("pipelines"), dict):
        raise PaperDataError(
            f"{path} is not the IPA authors' pipeline settings: expected an object with 'pipelines' "
            "(shared/data/README.md)"
        )
    return data


def variant_name(model: str) -> str:
    """A short variant name: the artifact's model name without the organisation, lower case, '-' for '_'."""
    for org in _ORGS:
        if model.startswith(org + "-"):
            model = model[len(org) + 1 :]
            break
    return re.sub(r"[^a-z0-9.-]+", "-", model.lower()).strip("-.")[:63]


def main_setting(pipeline: Mapping[str, Any]) -> dict[str, Any]:
    """The SLA and base-allocation group that most of IPA's own runs used (ties: the group more runs used).
    Runs of one pipeline do not all share a threshold or margin, so groups differ in base cores."""
    ipa_series = {r["series"] for r in pipeline["runs"] if r["policy"] == "IPA"}
    groups = pipeline["sla_and_base_allocation"]
    return max(groups, key=lambda g: (len(ipa_series & set(g["series"])), len(g["series"])))


def _mode(values: Iterable[Any]) -> Any:
    """The most common value (ties: the first seen): one setting for what the authors varied by run."""
    return Counter(values).most_common(1)[0][0]


def ipa_weights(pipeline: Mapping[str, Any], setting: Mapping[str, Any]) -> tuple[float, float, float]:
    """The objective weights of IPA's own runs in the setting's group, so that the weights and the base
    cores come from the same runs. The authors set weights per load pattern (audio-qa weighs accuracy higher
    on the bursty and fluctuating windows); a spec has one objective, so it takes the weights most of those
    runs used, and of a tie the one that weighs accuracy more."""
    group = set(setting["series"])
    counts = Counter(
        (r["alpha"], r["beta"], r["gamma"])
        for r in pipeline["runs"]
        if r["policy"] == "IPA" and r["series"] in group
    )
    if not counts:
        raise PaperDataError("no IPA run in the base-allocation group the conversion chose")
    return max(counts, key=lambda w: (counts[w], w[0]))


def _loads(setting: Mapping[str, Any], n_stages: int) -> list[float]:
    load = setting["profiling_load_rps"]
    return list(load) if isinstance(load, list) else [load] * n_stages


def stage_profiles(
    runs: list[dict[str, Any]], stage: Mapping[str, Any], load_rps: float, source: str
) -> tuple[list[Profile], list[str]]:
    """Every core count of every variant of one stage, at the load the authors' optimizer read."""
    series = stage["profiling_series"]
    mine = [r for r in runs if r["series"] == series and r["load_rps"] == load_rps]
    wanted = {v["model"] for v in stage["variants"] if v.get("profiled_in_series")}
    profiles, skipped = [], []
    cells: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in mine:
        if r["model"] in wanted:
            cells.setdefault((r["model"], int(r["cpu"])), []).append(r)
    for (model, cpu), rows in sorted(cells.items()):
        points, missing = [], []
        for r in sorted(rows, key=lambda r: r["batch"]):
            raw = [r.get(f"model_{k}_ms") for k in ("p50", "p95", "p99", "mean")]
            timed = all(isinstance(x, int | float) for x in raw)
            if not timed or not r.get("max_throughput_rps"):
                what = "throughput" if timed else "latency"
                skipped.append(
                    f"series {series} {model} cpu={cpu} batch={r['batch']} at {load_rps:g} req/s: no {what}"
                )
                missing.append(int(r["batch"]))
                continue
            stats = [float(x) for x in raw if x is not None]
            points.append(
                BatchPoint(
                    batch=int(r["batch"]),
                    p50_ms=stats[0],
                    p95_ms=stats[1],
                    p99_ms=stats[2],
                    mean_ms=stats[3],
                    throughput_rps=float(r["max_throughput_rps"]),
                )
            )
        if not points:
            continue
        profiles.append(
            Profile(
                model=model,
                hardware=HARDWARE,
                dtype="fp32",
                resources=f"cpu={cpu}",
                task=_NODES.get(stage["node_name"], (stage["node_name"], ""))[0],
                points=tuple(points),
                provenance={
                    "source": source,
                    "measured_by": "the IPA authors (Ghafouri et al., JSys 2024), their profiler",
                    "series": series,
                    "node": stage["node_name"],
                    "load_rps": load_rps,
                    "load_duration_s": rows[0].get("load_duration_s"),
                    "experiment_ids": {int(r["batch"]): r.get("experiment_id") for r in rows},
                    "statistic": "latency: model_p50/p95/p99/mean_ms (one batch inside the model server); "
                    "throughput: max_throughput_rps (served req/s of the pod, at most load_rps)",
                    "cpu": "Intel Xeon Gold 6126, cpu request = limit = the core count",
                    "batches_without_measure": missing,  # the run recorded no completed request or rate
                },
            )
        )
    return profiles, skipped


def convert(
    runs: list[dict[str, Any]], settings: Mapping[str, Any], name: str, *, profiles_file: str, source: str
) -> PaperPipeline:
    """One of the five pipelines as a spec and its profiles. `profiles_file` is the profile file's path
    relative to where the spec will be written."""
    p = settings["pipelines"][name]
    setting = main_setting(p)
    stages = p["stages"]
    loads = _loads(setting, len(stages))
    profiles: list[Profile] = []
    skipped: list[str] = []
    for stage, load in zip(stages, loads, strict=True):
        found, missed = stage_profiles(runs, stage, load, source)
        profiles += found
        skipped += missed
    have = {(pr.model, pr.resources) for pr in profiles}
    in_figures = [r for r in p["runs"] if r.get("in_paper_figures")]
    alpha, beta, gamma = ipa_weights(p, setting)
    cap = p["batch_sizes"]["batching_cap"]
    base = setting["base_cores"]
    spec_stages = []
    for stage in stages:
        variants = []
        for v in stage["variants"]:
            cores = base[stage["task_name"]].get(v["model"])
            if cores is None or not v.get("profiled_in_series"):
                continue  # IPA gave it no base allocation: its optimizer never considered it
            if (v["model"], f"cpu={cores}") not in have:
                raise PaperDataError(
                    f"{name}/{stage['task_name']}/{v['model']}: no profiled run at {cores} cores and the "
                    "optimizer's load; the profiling file does not match the settings file"
                )
            variants.append(
                {
                    "name": variant_name(v["model"]),
                    "model": v["model"],
                    "accuracy": round(float(v["accuracy_pct"]), 4),
                    "metric": _NODES.get(stage["node_name"], ("", "accuracy"))[1],
                    "shapes": [{"hardware": HARDWARE, "resources": {"cpu": cores}}],
                }
            )
        spec_stages.append({"name": stage["task_name"], "variants": variants})
    baselines = p["baselines"]
    pins = {}
    for key, label in (("fa2_low", "FA2-low"), ("fa2_high", "FA2-high")):
        pinned = _mode(tuple(v) for v in baselines[label]["pinned_variants"].values())
        pins[key] = {s: variant_name(m) for s, m in zip(p["stage_order"], pinned, strict=True)}
    rim = _mode(tuple(v["replicas"]) for v in baselines["RIM"]["per_pattern"].values())
    throughput_margin = float(setting["throughput_margin_pct"])
    latency_margin = float(setting["latency_margin_pct"])
    if not -100 < throughput_margin <= 0 or latency_margin <= -100:
        raise PaperDataError(
            f"{name}: throughput_margin_pct {throughput_margin:g} must lie in (-100, 0] and "
            f"latency_margin_pct {latency_margin:g} above -100 (they scale a throughput down, a latency up)"
        )
    # One set of batch sizes for the spec: those every stage was profiled at, up to the batching cap.
    batches = sorted(set.intersection(*(set(st["profiled_batch_sizes"]) for st in stages)))
    spec = {
        "name": f"paper-{name}",
        "description": (
            f"The IPA paper's {name} pipeline ({' -> '.join(p['stage_order'])}) on the authors' own CPU "
            f"profiles (series {', '.join(str(s['profiling_series']) for s in stages)}; converted by "
            "`ipa profiles import-paper`)"
        ),
        "sla_s": round(float(setting["pipeline_sla_s"]), 3),
        "latency_percentile": "p99",
        "objective": {
            "alpha": alpha,
            "beta": beta,
            "gamma": gamma,
            "accuracy": "product",
            "rank_normalize": bool(p["normalize_accuracy_in_optimizer"][0]),
        },
        "limits": {
            "batch_sizes": [b for b in batches if b <= cap],
            "max_batch": cap,
            "max_replicas": max(r.get("scaling_cap", 100) for r in p["runs"]),
            # Their throughput margin (-50 %: plan a replica for half its measured throughput) is the
            # spec's utilisation cap; their latency margin (+100 %: count each latency twice) is the
            # share of the SLA kept free.
            "max_utilisation": round(1 + throughput_margin / 100, 4),
            "latency_headroom": round(1 - 1 / (1 + latency_margin / 100), 4),
        },
        "cost_per_unit": {"cpu": 1.0},
        "profiles": [profiles_file],
        "baselines": {
            **pins,
            "rim_replicas": dict(zip(p["stage_order"], rim, strict=True)),
        },
        "adaptation": {"interval_s": _mode(r["adaptation_interval_s"] for r in in_figures)},
        "stages": spec_stages,
    }
    return PaperPipeline(
        f"paper-{name}", spec, ProfileSet({pr.id: pr for pr in profiles}), tuple(skipped), setting
    )


def header_comment(
    name: str, setting: Mapping[str, Any], settings: Mapping[str, Any], runs_source: str, settings_source: str
) -> str:
    """The comment a converted spec starts with: where each number came from. `setting` is the group of
    runs the spec encodes (PaperPipeline.setting)."""
    fork = settings.get("source", {}).get("fork", {})
    sla, threshold, load = setting["pipeline_sla_s"], setting["threshold_rps"], setting["profiling_load_rps"]
    series = ", ".join(str(x) for x in setting["series"])
    return "\n".join(
        [
            f"# The IPA paper's {name} pipeline, converted by `ipa profiles import-paper` from",
            f"#   {runs_source} (the authors' profiling runs) and",
            f"#   {settings_source} (their final experiments' settings;",
            f"#   {fork.get('repo', '?')}@{str(fork.get('commit', '?'))[:7]}).",
            f"# SLA: IPA's rule, as the runs logged ({sla:.4f} s). Each variant has one shape: the base",
            f"# cores IPA gave it (threshold {threshold} req/s), as in the authors' runs {series}.",
            f"# Profiles at {load} req/s: model-side p99 and max throughput, as IPA's optimizer read them.",
            "# Objective weights: IPA's runs' there (ties: the higher alpha). FA2 pins, RIM: most runs'.",
            "# What differs from the authors' formulation: docs/evaluation.md#the-papers-five-pipelines.",
            "",
        ]
    )


def write_all(
    runs_path: str | Path, settings_path: str | Path, profiles_dir: Path, specs_dir: Path
) -> list[PaperPipeline]:
    """Convert all five pipelines: one profile file per pipeline (the same model is profiled in different
    series and at different loads for different pipelines) and one spec each. Every file is rendered and
    every spec checked against its profiles before anything is written, so a bad input leaves the folders
    as they were; each file is then replaced whole (written beside it, then renamed)."""
    import os

    import yaml

    from ..pipelines import missing_profiles
    from ..spec import PipelineSpec

    _, runs = read_runs(runs_path)
    settings = read_settings(settings_path)
    if not settings["pipelines"]:
        raise PaperDataError(f"{settings_path} names no pipeline: nothing to convert")
    runs_source, settings_source = Path(runs_path).name, Path(settings_path).name
    rel = Path(os.path.relpath(profiles_dir.resolve(), specs_dir.resolve())).as_posix()
    done, files = [], {}
    for name in settings["pipelines"]:
        try:
            converted = convert(runs, settings, name, profiles_file=f"{rel}/{name}.json", source=runs_source)
            header = header_comment(name, converted.setting, settings, runs_source, settings_source)
        except PaperDataError as exc:
            raise PaperDataError(f"{settings_path}: {exc}") from None
        except (KeyError, TypeError, IndexError, AttributeError, ValueError, ZeroDivisionError) as exc:
            raise PaperDataError(
                f"{settings_path} / {runs_path}: pipeline '{name}' lacks or mistypes a field the conversion "
                f"reads ({type(exc).__name__}: {exc}); the files must be the ones shared/data/README.md "
                "describes"
            ) from None
        spec = PipelineSpec.from_dict(
            converted.spec, source=f"the converted spec of {name} ({settings_path})"
        )
        missing = missing_profiles(spec, converted.profiles)
        if missing:
            raise PaperDataError(f"{name}: no profile for {missing}; the two files do not belong together")
        done.append(converted)
        files[profiles_dir / f"{name}.json"] = json.dumps(converted.profiles.to_dict(), indent=1) + "\n"
        files[specs_dir / f"{name}.yaml"] = header + yaml.safe_dump(
            converted.spec, sort_keys=False, width=110
        )
    profiles_dir.mkdir(parents=True, exist_ok=True)
    specs_dir.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        part = path.with_name(path.name + ".part")
        part.write_text(text)
        part.replace(path)
    return done
