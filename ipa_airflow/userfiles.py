"""Reading the files people write or edit by hand: specs, deployment templates, profile and plan files.

Plain parsers accept things that are almost never meant and never say so: a key given twice in a YAML
mapping or a JSON object (the last one wins), and `NaN` / `Infinity` in JSON (not JSON at all, but
Python's json module reads them). Everything here refuses those, naming the file and, where the parser
knows it, the line. Numbers in YAML are read as YAML 1.2 reads them (see the resolvers below).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import yaml
from yaml.constructor import ConstructorError

_MERGE_TAG = "tag:yaml.org,2002:merge"
# Aliases are shared when parsed but copied by everything that walks the result (validation, deepcopy,
# the manifest schema): a few nested aliases ("billion laughs") would stand for billions of nodes.
MAX_EXPANDED_NODES = 1_000_000


class UserFileError(ValueError):
    """A file that cannot be read or parsed. `problem` says what (and where, when the parser knows)."""

    def __init__(self, path: str | Path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class StrictSafeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key repeated in one mapping (PyYAML keeps the last, silently) and
    a document whose aliases expand past MAX_EXPANDED_NODES."""

    def construct_document(self, node: yaml.Node) -> Any:
        if _expanded_size(node, {}) > MAX_EXPANDED_NODES:
            raise ConstructorError(
                None,
                None,
                f"its aliases (*name) expand to more than {MAX_EXPANDED_NODES:,} values",
                node.start_mark,
            )
        return super().construct_document(node)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        first: dict[Any, yaml.Mark] = {}
        for key_node, _ in node.value:
            if key_node.tag == _MERGE_TAG:
                continue  # keys merged in with `<<:` may be overridden; that is what merging is for
            key = self.construct_object(key_node, deep=True)
            try:
                seen = first.get(key)
            except TypeError:
                continue  # an unhashable key: the base constructor reports it
            if seen is not None:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"duplicate key {key!r} (first given on line {seen.line + 1}); give each key once",
                    key_node.start_mark,
                )
            first[key] = key_node.start_mark
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many nodes the document holds once every alias is copied out (memoised per shared node)."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a recursive alias counts once; the constructor handles recursion itself
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    memo[id(node)] = size
    return size


# Numbers as YAML 1.2 reads them. YAML 1.1 (PyYAML) reads '1:30' as 90 (base 60) and '010' as 8
# (octal), and '1e-3' as text; here the first two stay text (which a number field then refuses, saying
# so) and the third is a number.
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
StrictSafeLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
StrictSafeLoader.add_implicit_resolver(
    _INT, re.compile(r"^(?:[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"), list("-+0123456789")
)
StrictSafeLoader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"""^(?:[-+]?[0-9][0-9_]*\.[0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?
            |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
            |[-+]?\.(?:inf|Inf|INF)
            |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str, source: str | Path) -> Any:
    """One YAML document, parsed with StrictSafeLoader. Raises UserFileError naming the line."""
    try:
        return yaml.load(text, Loader=StrictSafeLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserFileError(source, f"not valid YAML{where}: {problem}") from None
    except RecursionError:
        raise UserFileError(source, "not valid YAML: nested too deeply") from None


def _read_text(path: Path) -> str:
    try:
        return path.read_text()
    except OSError as exc:
        raise UserFileError(path, f"cannot read the file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise UserFileError(path, "cannot read the file: it is not UTF-8 text") from None


def read_yaml(path: str | Path) -> Any:
    path = Path(path)
    return parse_yaml(_read_text(path), path)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r} in one object; give each key once")
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows (and no figure in this file may be {name})")


def parse_json(text: str, source: str | Path) -> Any:
    """JSON with no repeated keys and no NaN/Infinity. Raises UserFileError naming the line."""
    try:
        return json.loads(text, object_pairs_hook=_no_duplicates, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        where = f" (line {exc.lineno}, column {exc.colno})"
        raise UserFileError(source, f"not valid JSON{where}: {exc.msg}") from None
    except ValueError as exc:
        raise UserFileError(source, f"not valid JSON: {exc}") from None
    except RecursionError:
        raise UserFileError(source, "not valid JSON: nested too deeply") from None


def read_json(path: str | Path) -> Any:
    path = Path(path)
    return parse_json(_read_text(path), path)
