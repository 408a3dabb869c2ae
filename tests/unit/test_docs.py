"""The documentation names every field a spec accepts, so the reference cannot fall behind the code."""

import re

import pytest

from ipa_airflow import spec as S
from tests.conftest import REPO

SECTIONS = {
    S.PipelineSpec: "Top level",
    S.Objective: "`objective`",
    S.Limits: "`limits`",
    S.Baselines: "`baselines`",
    S.Adaptation: "`adaptation`",
    S.DeploymentSettings: "`deployment`",
    S.Stage: "`stages[]`",
    S.RegisteredModel: "`stages[].registered_model`",
    S.Variant: "`stages[].variants[]`",
    S.Shape: "`shapes[]`",
}


def _section(text: str, title: str) -> str:
    m = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert m, f"docs/spec.md has no section '{title}'"
    return m.group(1)


@pytest.mark.parametrize("model", list(SECTIONS), ids=lambda m: m.__name__)
def test_every_spec_field_is_documented(model):
    section = _section((REPO / "docs" / "spec.md").read_text(), SECTIONS[model])
    documented = set(re.findall(r"^\| `([a-z_0-9]+)` \|", section, flags=re.M))
    assert documented == set(model.model_fields), (
        f"fields of {model.__name__} missing from docs/spec.md: {set(model.model_fields) - documented}; "
        f"documented but gone: {documented - set(model.model_fields)}"
    )


# The Markdown files that link to other files. Each group must yield links, so a link pattern that stopped
# matching fails here instead of passing with nothing checked.
LINKED = ["README.md", "docs/*.md", "dags/README.md"]


def _slug(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces as hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path) -> set[str]:
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), flags=re.M)}


def _relative_links(text: str) -> list[tuple[str, str]]:
    """(path, anchor) of every link that is not a web address; an anchor alone links into the same file."""
    links = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        links.append((path, anchor))
    return links


@pytest.mark.parametrize("pattern", LINKED)
def test_documentation_links_resolve(pattern):
    files = sorted(REPO.glob(pattern))
    assert files, f"no file matches {pattern}"
    checked = 0
    for doc in files:
        for path, anchor in _relative_links(doc.read_text()):
            target = (doc.parent / path).resolve() if path else doc
            where = f"{doc.relative_to(REPO)} links to {path}{'#' + anchor if anchor else ''}"
            assert target.exists(), f"{where}: no such file"
            if anchor:
                assert anchor in _anchors(target), f"{where}: {target.name} has no heading with that anchor"
            checked += 1
    assert checked, f"no links found in {pattern}: has the link syntax changed?"
