"""The bad-input corpus: every `cases/*.yaml` of this package, checked, and the files a case needs.

A case file is a YAML list of mappings. The keys every kind shares are checked here (`id`, `about`,
`kind`, `expect`, `match`, `timeout_s`, `files`, `env`); a kind module may define
`check(case) -> list[tuple[field, problem]]` for its own keys. A corpus with a bad case is refused as a
whole, every problem named with its file and case: a case that cannot run would otherwise count as
nothing.
"""

from __future__ import annotations

import gzip
import importlib
import importlib.resources
import importlib.util
import math
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from ..settings import REPO
from ..userfiles import parse_yaml

KINDS_PACKAGE = "ipa_airflow.selfcheck.kinds"
DEFAULT_TIMEOUT_S = 60.0
MAX_TIMEOUT_S = 600.0
EXPECTS = ("error", "ok")
COMMON_KEYS = ("id", "about", "kind", "expect", "match", "timeout_s", "files", "env")
_ID = re.compile(r"^[a-z0-9]+(-[a-z0-9]+)*$")
_FILE_FORMS = ("copy", "gzip", "gzip_truncated", "dir")


class CorpusError(ValueError):
    """The corpus itself is wrong; `problems` are (where, what) pairs, `where` = 'cases/x.yaml[3] (id)'."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        lines = "\n".join(f"  {where}: {what}" for where, what in problems)
        super().__init__(f"the selfcheck corpus has {len(problems)} problem(s):\n{lines}")


@dataclass(frozen=True)
class Case:
    id: str
    about: str
    kind: str
    expect: str
    match: str | None
    timeout_s: float
    files: Mapping[str, Any]
    env: Mapping[str, str | None]
    source: str  # 'cases/cli.yaml'
    raw: Mapping[str, Any]  # the whole mapping, {repo} expanded: what the kind runner gets

    @classmethod
    def of(cls, raw: Mapping[str, Any], source: str = "test") -> Case:
        """A case from a mapping, checked (tests build synthetic cases with it)."""
        problems = check_case(raw, f"{source} ({raw.get('id', '?')})", check_kind=False)
        if problems:
            raise CorpusError(problems)
        return _build(expand(raw), source)


def _build(raw: Mapping[str, Any], source: str) -> Case:
    return Case(
        id=raw["id"],
        about=raw["about"],
        kind=raw.get("kind", "cli"),
        expect=raw["expect"],
        match=raw.get("match"),
        timeout_s=float(raw.get("timeout_s", DEFAULT_TIMEOUT_S)),
        files=raw.get("files") or {},
        env=raw.get("env") or {},
        source=source,
        raw=dict(raw),
    )


def expand(value: Any) -> Any:
    """`value` with the token {repo} replaced by the repository root in every string."""
    if isinstance(value, str):
        return value.replace("{repo}", str(REPO))
    if isinstance(value, Mapping):
        return {k: expand(v) for k, v in value.items()}
    if isinstance(value, list):
        return [expand(v) for v in value]
    return value


def case_files() -> list[tuple[str, str]]:
    """(name, text) of every cases/*.yaml shipped with the package, by name."""
    folder = importlib.resources.files("ipa_airflow.selfcheck") / "cases"
    found = [f for f in folder.iterdir() if f.name.endswith((".yaml", ".yml")) and f.is_file()]
    return [(f"cases/{f.name}", f.read_text(encoding="utf-8")) for f in sorted(found, key=lambda f: f.name)]


def load_cases(files: Sequence[tuple[str, str]] | None = None) -> list[Case]:
    """Every case of the corpus (or of `files`: (name, text) pairs), checked as a whole."""
    problems: list[tuple[str, str]] = []
    cases: list[Case] = []
    seen: dict[str, str] = {}
    for name, text in case_files() if files is None else files:
        try:
            doc = parse_yaml(text, name)
        except ValueError as exc:
            problems.append((name, str(exc)))
            continue
        if doc is None:
            continue  # an empty file: a domain with no case yet
        if not isinstance(doc, list):
            problems.append((name, f"must be a YAML list of cases, not a {type(doc).__name__}"))
            continue
        for i, raw in enumerate(doc):
            where = f"{name}[{i}]" + (f" ({raw['id']})" if isinstance(raw, dict) and "id" in raw else "")
            mine = check_case(raw, where)
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                if raw["id"] in seen:
                    mine.append((where, f"id {raw['id']!r} is also the id of {seen[raw['id']]}"))
                seen.setdefault(raw["id"], where)
            problems += mine
            if not mine:
                cases.append(_build(expand(raw), name))
    if problems:
        raise CorpusError(problems)
    return cases


def check_case(raw: Any, where: str, *, check_kind: bool = True) -> list[tuple[str, str]]:
    """The problems of one case's common keys, and its kind's own check."""
    if not isinstance(raw, dict):
        return [(where, f"a case is a mapping with id, about, argv..., not a {type(raw).__name__}")]
    out: list[tuple[str, str]] = []

    def bad(key: str, what: str) -> None:
        out.append((f"{where}.{key}", what))

    if not isinstance(raw.get("id"), str) or not _ID.match(raw["id"]):
        bad("id", f"must be kebab-case (lower case, digits and '-'), got {raw.get('id')!r}")
    if not isinstance(raw.get("about"), str) or not raw["about"].strip():
        bad("about", "must say in one line what the case is")
    kind = raw.get("kind", "cli")
    if not isinstance(kind, str) or not kind.isidentifier():
        bad("kind", f"must name a module of {KINDS_PACKAGE}, got {kind!r}")
        kind = None
    elif check_kind and importlib.util.find_spec(f"{KINDS_PACKAGE}.{kind}") is None:
        bad("kind", f"no runner for kind {kind!r} (no module {KINDS_PACKAGE}.{kind})")
        kind = None
    if raw.get("expect") not in EXPECTS:
        bad("expect", f"must be one of {', '.join(EXPECTS)}, got {raw.get('expect')!r}")
    if "match" in raw:
        if not isinstance(raw["match"], str) or not raw["match"]:
            bad("match", "must be a non-empty regular expression")
        else:
            try:
                re.compile(raw["match"])
            except re.error as exc:
                bad("match", f"is not a regular expression: {exc}")
    t = raw.get("timeout_s", DEFAULT_TIMEOUT_S)
    if (
        isinstance(t, bool)
        or not isinstance(t, int | float)
        or not math.isfinite(t)
        or not 0 < t <= MAX_TIMEOUT_S
    ):
        bad("timeout_s", f"must be a number of seconds above 0 and at most {MAX_TIMEOUT_S:g}, got {t!r}")
    out += [(f"{where}.files{k}", m) for k, m in _check_files(raw.get("files", {}))]
    env = raw.get("env", {})
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in env.items()
    ):
        bad("env", "must map variable names to text (or null to unset one)")
    if kind and check_kind:
        checker = getattr(importlib.import_module(f"{KINDS_PACKAGE}.{kind}"), "check", None)
        if checker is not None:
            out += [(f"{where}.{k}" if k else where, m) for k, m in checker(raw)]
    return out


def _check_files(files: Any) -> list[tuple[str, str]]:
    if not isinstance(files, dict):
        return [("", "must map file names to their content")]
    out = []
    for name, content in files.items():
        key = f"[{name!r}]"
        path = PurePosixPath(str(name))
        if not isinstance(name, str) or not name or path.is_absolute() or ".." in path.parts:
            out.append((key, "a file name must be relative and stay inside the case's folder"))
        if isinstance(content, str):
            continue
        if not isinstance(content, dict) or len(content) != 1 or next(iter(content)) not in _FILE_FORMS:
            out.append((key, f"must be the text, or a mapping with one of {', '.join(_FILE_FORMS)}"))
            continue
        form, value = next(iter(content.items()))
        if form == "dir" and value is not True:
            out.append((key, "dir: true makes an empty folder"))
        elif form != "dir" and not isinstance(value, str):
            out.append((key, f"{form}: takes text"))
        elif form == "copy" and not (REPO / value).exists():
            out.append((key, f"copy: {value} is not a file of the repository"))
    return out


def write_files(case: Case, workdir: Path) -> None:
    """Create the case's files in its (empty) working directory."""
    for name, content in case.files.items():
        path = workdir / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, str):
            path.write_text(content)
            continue
        form, value = next(iter(content.items()))
        if form == "dir":
            path.mkdir(exist_ok=True)
        elif form == "copy":
            source = REPO / value
            if source.is_dir():
                shutil.copytree(source, path)
            else:
                shutil.copyfile(source, path)
        elif form == "gzip":
            path.write_bytes(gzip.compress(value.encode()))
        elif form == "gzip_truncated":
            blob = gzip.compress(value.encode())
            path.write_bytes(blob[: len(blob) // 2])


def select(cases: Sequence[Case], pattern: str | None) -> list[Case]:
    """The case with this id, else the cases whose id the regular expression finds something in."""
    if not pattern:
        return list(cases)
    exact = [c for c in cases if c.id == pattern]
    if exact:
        return exact
    try:
        rx = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"--case {pattern!r} is neither a case id nor a regular expression: {exc}") from None
    chosen = [c for c in cases if rx.search(c.id)]
    if not chosen:
        raise ValueError(
            f"no case id matches {pattern!r}; ids look like {', '.join(c.id for c in list(cases)[:3])} "
            "(ipa selfcheck --json lists them all)"
        )
    return chosen
