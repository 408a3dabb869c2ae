"""pydantic's validation errors, told as people read their files: a YAML/JSON path and what to do.

Shared by the spec, profile-file and plan-file schemas, so every file a user writes reports a bad field
the same way: `stages[1].variants[0].accuracy: Input should be greater than or equal to 0`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

# Name rules, with the words an error says when a name breaks one.
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
LABEL_VALUE = r"^[a-z0-9]([-a-z0-9_.]*[a-z0-9])?$"
RESOURCES_KEY = r"^(cpu|gpu)=[0-9]+(\.[0-9]+)?$"  # Resources.key, what one replica gets
_PATTERN_WORDS = {
    DNS_LABEL: "lower case letters, digits and '-', starting and ending with a letter or digit "
    "(a DNS-1123 label, as Kubernetes object names must be)",
    LABEL_VALUE: "lower case letters, digits, '-', '_' and '.', starting and ending with a letter or digit "
    "(a Kubernetes label value)",
    RESOURCES_KEY: "'cpu=N' or 'gpu=N', what one replica gets (e.g. 'cpu=2', 'cpu=0.5', 'gpu=1')",
}


class FieldProblems(ValueError):
    """Raised by a cross-field check: problems, each at a path relative to the model being checked.

    pydantic keeps the exception in the error's context, so `problems()` can put each one at its own
    path instead of at the model's."""

    def __init__(self, problems: list[tuple[str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{p}: {m}" if p else m for p, m in problems))


def join_path(base: str, rel: str) -> str:
    if not base:
        return rel
    if not rel:
        return base
    return base + rel if rel.startswith("[") else f"{base}.{rel}"


def yaml_path(loc: tuple[Any, ...], data: Any) -> str:
    """Turn pydantic's loc into 'stages[0].variants[1].accuracy', naming list items where we can."""
    out = ""
    node = data
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
            node = node[part] if isinstance(node, list) and part < len(node) else None
        elif isinstance(part, str) and not _is_union_tag(part):
            out += f".{part}" if out else part
            node = node.get(part) if isinstance(node, Mapping) else None
    return out


def _is_union_tag(part: str) -> bool:
    # pydantic puts the union member's type name into loc ('int', 'dict[str,...]', 'function-after[...]')
    return "[" in part or part in {"int", "float", "str", "bool"} or part.startswith("constrained")


def _kind(value: Any) -> str:
    names = {
        bool: "a boolean",
        int: "a number",
        float: "a number",
        str: "text",
        list: "a list",
        dict: "a mapping",
    }
    return "nothing (null)" if value is None else names.get(type(value), type(value).__name__)


def _message(err: Mapping[str, Any], what: str) -> str:
    kind, value = err["type"], err.get("input")
    if kind == "extra_forbidden":
        return f"unknown key (check its spelling; {what})"
    if kind == "missing":
        return "required field is missing"
    if kind in ("int_type", "float_type", "int_from_float") and isinstance(value, bool):
        return f"expected a number, got the boolean {str(value).lower()}"
    if kind in ("int_type", "float_type") and isinstance(value, str):
        return f"expected a number, got the text {value!r} (write numbers without quotes)"
    if kind == "int_type" and isinstance(value, float):
        return f"expected a whole number, got {value!r}"
    if kind in ("model_type", "dict_type", "model_attributes_type", "dataclass_type"):
        return f"expected a mapping (keys and values), got {_kind(value)}"
    if kind == "list_type":
        return f"expected a list, got {_kind(value)}"
    if kind == "string_pattern_mismatch":
        pattern = (err.get("ctx") or {}).get("pattern", "")
        if pattern in _PATTERN_WORDS:
            return f"{value!r} is not valid here: use {_PATTERN_WORDS[pattern]}"
    if kind == "string_too_long" and isinstance(value, str):
        limit = (err.get("ctx") or {}).get("max_length")
        return f"{value!r} is {len(value)} characters; at most {limit} are allowed"
    if kind == "finite_number":
        return f"must be a finite number, not {value!r}"
    return err["msg"].removeprefix("Value error, ")


def problems_of(
    exc: ValidationError, data: Any, *, what: str = "see docs/spec.md for the fields"
) -> list[tuple[str, str]]:
    """(path, message) for each error, deduplicated, in pydantic's order; `what` says where the fields
    are documented."""
    out: list[tuple[str, str]] = []
    for err in exc.errors():
        path = yaml_path(tuple(err["loc"]), data)
        cause = (err.get("ctx") or {}).get("error")
        found = (
            [(join_path(path, p), m) for p, m in cause.problems]
            if isinstance(cause, FieldProblems)
            else [(path, _message(err, what))]
        )
        for item in found:
            if item not in out:
                out.append(item)
    return out


def format_problems(found: list[tuple[str, str]]) -> str:
    return "\n".join(f"  {path or '<root>'}: {msg}" for path, msg in found)


def first_repeat(keys: Iterable[Hashable]) -> tuple[int, int] | None:
    """(index of the first key given again, index where it was first given); None when each is once."""
    first: dict[Hashable, int] = {}
    for j, key in enumerate(keys):
        if key in first:
            return j, first[key]
        first[key] = j
    return None
