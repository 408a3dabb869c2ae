"""Packaging: pyproject.toml declares ranges a team's own Airflow can live with, constraints.txt pins the
set the project is tested with, and this virtualenv holds exactly that set. Offline; the resolution
against the package index is `make check-resolution` (tools/check_resolution.py), whose own logic is
tested here with real pip on wheels made in a temporary folder."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from tests.conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
# Our own tools, pinned like the rest of the test set: they never go into a user's environment.
PINNED_EXTRAS = {"test"}


def declared(groups: set[str] | None = None) -> dict[str, list[Requirement]]:
    """pyproject's requirements by group ('core' and each extra), without the package's own name
    (the `all` extra lists the other extras through it)."""
    by_group = {"core": PROJECT["dependencies"], **PROJECT["optional-dependencies"]}
    own = canonicalize_name(PROJECT["name"])
    return {
        group: [r for r in map(Requirement, reqs) if canonicalize_name(r.name) != own]
        for group, reqs in by_group.items()
        if groups is None or group in groups
    }


def ranged() -> list[tuple[str, Requirement]]:
    return [(g, r) for g, reqs in declared().items() if g not in PINNED_EXTRAS for r in reqs]


def every_requirement() -> list[Requirement]:
    return [r for reqs in declared().values() for r in reqs]


def constraints() -> dict[str, str]:
    pins = {}
    for line in (REPO / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep, f"constraints.txt: {line!r} is not a name==version pin"
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_the_package_declares_ranges_with_a_lower_bound_and_no_exact_pins():
    assert len(ranged()) >= 15  # the core and the airflow, mlflow, forecast and torch extras
    pinned = [f"{g}: {r}" for g, r in ranged() if any(s.operator in ("==", "===") for s in r.specifier)]
    unbounded = [
        f"{g}: {r}" for g, r in ranged() if not any(s.operator in (">=", ">", "~=") for s in r.specifier)
    ]
    assert not pinned, f"exact pins belong in constraints.txt, not pyproject.toml: {pinned}"
    assert not unbounded, f"no lower bound (the oldest release the code was checked against): {unbounded}"


def test_every_declared_dependency_is_pinned_in_constraints_within_its_range():
    pins = constraints()
    missing = [str(r) for r in every_requirement() if canonicalize_name(r.name) not in pins]
    assert not missing, f"declared in pyproject.toml but not pinned in constraints.txt: {missing}"
    outside = [
        f"{r} but constraints.txt pins {pins[canonicalize_name(r.name)]}"
        for r in every_requirement()
        if not r.specifier.contains(pins[canonicalize_name(r.name)], prereleases=True)
    ]
    assert not outside, outside


def test_this_virtualenv_holds_the_pinned_set():
    """`make venv` installs with -c constraints.txt: the tests run on exactly the pinned versions,
    which lie in the declared ranges."""
    pins = constraints()
    found = {}
    for r in every_requirement():
        try:
            found[r.name] = importlib.metadata.version(r.name)
        except importlib.metadata.PackageNotFoundError:
            pytest.fail(f"{r.name} is declared in pyproject.toml but not installed (run make venv)")
    differ = [
        f"{n} {v} (pinned {pins[canonicalize_name(n)]})"
        for n, v in found.items()
        if v != pins[canonicalize_name(n)]
    ]
    assert not differ, f"the virtualenv differs from constraints.txt (run make venv): {differ}"
    outside = [
        f"{r} (installed {found[r.name]})" for r in every_requirement() if found[r.name] not in r.specifier
    ]
    assert not outside, outside


# --- tools/check_resolution.py, with real pip on local wheels (no index) -------------------------------


def load_tool():
    path = REPO / "tools" / "check_resolution.py"
    spec = importlib.util.spec_from_file_location("check_resolution", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def wheel(folder: Path, name: str, version: str, *requires: str) -> None:
    """A minimal pure-Python wheel: metadata only, which is all a dry run reads."""
    dist = f"{name.replace('-', '_')}-{version}"
    files = {
        f"{dist}.dist-info/METADATA": "Metadata-Version: 2.1\n"
        f"Name: {name}\nVersion: {version}\n" + "".join(f"Requires-Dist: {r}\n" for r in requires),
        f"{dist}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
        "Tag: py3-none-any\n",
    }
    files[f"{dist}.dist-info/RECORD"] = "".join(f"{f},,\n" for f in [*files, f"{dist}.dist-info/RECORD"])
    with zipfile.ZipFile(folder / f"{dist}-py3-none-any.whl", "w") as zf:
        for f, text in files.items():
            zf.writestr(f, text)


@pytest.fixture
def index(tmp_path: Path) -> list[str]:
    """pip arguments for a local index: probe-app 1.0 needs probe-lib<2; probe-lib 1.0 and 2.0 exist."""
    wheel(tmp_path, "ipa-probe-app", "1.0", "ipa-probe-lib<2")
    wheel(tmp_path, "ipa-probe-lib", "1.0")
    wheel(tmp_path, "ipa-probe-lib", "2.0")
    return ["--no-index", f"--find-links={tmp_path}"]


def test_the_resolution_check_reports_what_pip_chose(index):
    tool = load_tool()
    shown = ("ipa-probe-app", "ipa-probe-lib")
    result = tool.resolve("ok", ["ipa-probe-app"], [], shown=shown, pip_args=index)
    assert result.ok and result.error is None, result.error
    assert result.resolved == {"ipa-probe-app": "1.0", "ipa-probe-lib": "1.0"}  # 2.0 is out of range
    # An expected requirement pip left out fails the check, even when pip itself succeeded.
    partial = tool.resolve("partial", ["ipa-probe-lib"], [], expected=["ipa-probe-app"], pip_args=index)
    assert not partial.ok and partial.error == "resolved without ipa-probe-app"


def test_the_resolution_check_fails_with_pips_reason_on_a_conflict(index, capsys):
    tool = load_tool()
    result = tool.resolve("conflict", ["ipa-probe-app"], ["ipa-probe-lib==2.0"], pip_args=index)
    assert not result.ok and result.resolved == {}
    assert "ResolutionImpossible" in result.error
    # pip's own explanation: who asked for what.
    assert "The user requested ipa-probe-lib==2.0" in result.error
    assert "ipa-probe-app 1.0 depends on ipa-probe-lib<2" in result.error
    assert "WARNING" not in result.error

    argv = ["--json", "--project", "ipa-probe-app", "--extras", "", "--pin", "ipa-probe-lib==2.0"]
    assert tool.main([*argv, *(f"--pip-arg={a}" for a in index)]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["ok"] is False and out["requirement"] == "ipa-probe-app"
    [combination] = out["combinations"]
    assert combination["pins"] == ["ipa-probe-lib==2.0"] and "ResolutionImpossible" in combination["error"]


def test_the_resolution_check_covers_the_extras_a_user_installs():
    tool = load_tool()
    expected = tool.expected_requirements(REPO / "pyproject.toml", tool.DEFAULT_EXTRAS)
    assert expected[0] == PROJECT["name"]
    names = {canonicalize_name(Requirement(r).name) for r in expected[1:]}
    assert {"apache-airflow", "mlflow", "statsmodels", "torch"} <= names
    with pytest.raises(SystemExit, match="no extra nope"):
        tool.expected_requirements(REPO / "pyproject.toml", ["nope"])
    # Each built-in combination pins an Airflow 3 the airflow extra accepts, and pydantic and numpy.
    [airflow] = [r for r in declared({"airflow"})["airflow"] if r.name == "apache-airflow"]
    for name, pins in tool.COMBINATIONS.items():
        by_name = {Requirement(p).name: Requirement(p) for p in pins}
        assert {"apache-airflow", "pydantic", "numpy"} <= set(by_name), name
        [version] = [s.version for s in by_name["apache-airflow"].specifier]
        assert airflow.specifier.contains(version) and version != constraints()["apache-airflow"], name
