"""Resolve ipa-airflow's declared ranges beside other Airflow, pydantic and numpy versions.

pyproject.toml declares ranges so the package installs into a team's existing Airflow; constraints.txt
pins the set the project itself is tested with. This check asks pip (a dry run: nothing is installed)
whether `.[airflow,mlflow,forecast,torch]` resolves together with pins a user may already have, and
prints what pip chose. It needs the package index (PyPI, or the one pip is configured with) and about a
minute per combination, so it is `make check-resolution`, not part of `make test`. torch is included:
pip reads its metadata, not its gigabytes of wheels (measured: the torch extra adds about 10 s).

Exit status: 0 when every combination resolves, 1 when one does not (pip's own message is printed).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EXTRAS = ("airflow", "mlflow", "forecast", "torch")
# Each a set of pins a user's environment may already hold.
COMBINATIONS: dict[str, tuple[str, ...]] = {
    # What issue 19 found impossible beside the old `==` pins.
    "issue-19": ("apache-airflow==3.3.1", "pydantic==2.14.4", "numpy==2.3.5"),
    # The oldest Airflow we declare, the oldest pydantic line it accepts, NumPy 1.
    "oldest": ("apache-airflow==3.2.0", "pydantic==2.11.10", "numpy==1.26.4"),
}
# Reported for every combination (when resolved).
SHOWN = (
    "apache-airflow",
    "apache-airflow-providers-cncf-kubernetes",
    "kubernetes",
    "pydantic",
    "numpy",
    "scipy",
    "pandas",
    "mlflow",
    "torch",
)
TIMEOUT_S = 900


@dataclass(frozen=True)
class Resolution:
    name: str
    pins: tuple[str, ...]
    ok: bool
    seconds: float
    resolved: dict[str, str]  # shown package -> version pip chose
    error: str | None  # pip's message, or what else went wrong


def pip_command(
    requirements: Sequence[str],
    *,
    report: Path,
    target: Path,
    python_version: str,
    pip_args: Sequence[str] = (),
) -> list[str]:
    """pip's dry run for `requirements`, writing its installation report to `report`. pip 23 takes
    --python-version only with --target (nothing is written there in a dry run) and wheels only
    (--only-binary). Installed packages are ignored: the answer does not depend on this virtualenv."""
    return [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--dry-run",
        "--ignore-installed",
        "--disable-pip-version-check",
        "--target",
        str(target),
        "--only-binary",
        ":all:",
        "--python-version",
        python_version,
        "--report",
        str(report),
        *pip_args,
        *requirements,
    ]


def chosen_versions(report: Mapping) -> dict[str, str]:
    """Every package of a pip installation report (format 1), by canonical name."""
    return {
        canonicalize_name(item["metadata"]["name"]): item["metadata"]["version"] for item in report["install"]
    }


def pip_message(stdout: str, stderr: str) -> str:
    """pip's errors (stderr, without its warnings about e.g. unreachable extra indexes) and, for a
    ResolutionImpossible, the requirements that conflict (which pip prints on stdout)."""
    errors = [line for line in stderr.splitlines() if not line.startswith(("WARNING:", "DEPRECATION:"))]
    out = stdout.splitlines()
    cause: list[str] = []
    if "The conflict is caused by:" in out:
        for line in out[out.index("The conflict is caused by:") :]:
            if line.startswith("To fix this"):
                break
            cause.append(line)
    return "\n".join([*errors, *cause]).strip()


def missing_requirements(versions: Mapping[str, str], expected: Sequence[str]) -> list[str]:
    """The names of `expected` requirements the resolution left out (an extra that did not apply)."""
    return [r for r in expected if canonicalize_name(Requirement(r).name) not in versions]


def expected_requirements(pyproject: Path, extras: Sequence[str]) -> list[str]:
    """The project itself and what its optional-dependencies declare for `extras`."""
    project = tomllib.loads(pyproject.read_text())["project"]
    declared = project["optional-dependencies"]
    unknown = [e for e in extras if e not in declared]
    if unknown:
        have = ", ".join(declared)
        raise SystemExit(f"error: no extra {', '.join(unknown)} in {pyproject} (it has {have})")
    return [project["name"], *(r for e in extras for r in declared[e])]


def resolve(
    name: str,
    requirements: Sequence[str],
    pins: Sequence[str],
    *,
    expected: Sequence[str] = (),
    shown: Sequence[str] = SHOWN,
    python_version: str = "3.11",
    pip_args: Sequence[str] = (),
    timeout_s: float = TIMEOUT_S,
) -> Resolution:
    """Ask pip whether `requirements` and `pins` install together; `expected` must be in the answer."""
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ipa-resolve-") as tmp:
        report = Path(tmp) / "report.json"
        cmd = pip_command(
            [*requirements, *pins],
            report=report,
            target=Path(tmp) / "target",
            python_version=python_version,
            pip_args=pip_args,
        )
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            error = f"pip did not finish in {timeout_s:g} s (its resolver backtracking through versions?)"
            return Resolution(name, tuple(pins), False, time.monotonic() - start, {}, error)
        seconds = time.monotonic() - start
        if done.returncode != 0 or not report.is_file():
            error = pip_message(done.stdout, done.stderr) or f"pip exited with status {done.returncode}"
            return Resolution(name, tuple(pins), False, seconds, {}, error)
        versions = chosen_versions(json.loads(report.read_text()))
    chosen = {n: versions[canonicalize_name(n)] for n in shown if canonicalize_name(n) in versions}
    missing = missing_requirements(versions, [*pins, *expected])
    if missing:
        return Resolution(name, tuple(pins), False, seconds, chosen, f"resolved without {', '.join(missing)}")
    return Resolution(name, tuple(pins), True, seconds, chosen, None)


def describe(result: Resolution) -> str:
    head = f"{result.name}: {' '.join(result.pins) or '(no pins)'}"
    if not result.ok:
        return f"{head}\n  does NOT resolve ({result.seconds:.0f} s):\n" + "\n".join(
            f"    {line}" for line in (result.error or "").splitlines()
        )
    chosen = ", ".join(f"{n} {v}" for n, v in result.resolved.items())
    return f"{head}\n  resolves ({result.seconds:.0f} s): {chosen}"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.add_argument(
        "--pin",
        action="append",
        default=[],
        metavar="REQ",
        help="check this one combination instead of the built-in ones (repeat: --pin numpy==2.0.2 ...)",
    )
    p.add_argument(
        "--combination",
        action="append",
        choices=sorted(COMBINATIONS),
        help="run only these built-in combinations (default: all)",
    )
    p.add_argument(
        "--extras",
        default=",".join(DEFAULT_EXTRAS),
        help="the package's extras to resolve, comma-separated (default: %(default)s; '' for none)",
    )
    p.add_argument(
        "--project", default=str(REPO), help="what to resolve: this repository (default) or any requirement"
    )
    p.add_argument(
        "--show",
        action="append",
        metavar="NAME",
        help=f"report this package's version (default: {', '.join(SHOWN)})",
    )
    p.add_argument("--python-version", default="3.11", help="the interpreter to resolve for (default: 3.11)")
    p.add_argument(
        "--pip-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="passed on to pip, e.g. --pip-arg=--index-url=https://mirror/simple",
    )
    p.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per combination (default: 900)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    extras = [e.strip() for e in args.extras.split(",") if e.strip()]
    project = Path(args.project)
    is_repo = (project / "pyproject.toml").is_file()
    requirement = f"{project}[{','.join(extras)}]" if extras else str(project)
    # The package and its extras' requirements must be in the answer: an extra pip ignored checks nothing.
    expected = expected_requirements(project / "pyproject.toml", extras) if is_repo else []
    if args.pin:
        combinations = {"custom": tuple(args.pin)}
    else:
        combinations = {n: COMBINATIONS[n] for n in (args.combination or COMBINATIONS)}
    results = []
    for name, pins in combinations.items():
        if not args.json:
            print(f"resolving {name} ...", file=sys.stderr, flush=True)
        result = resolve(
            name,
            [requirement],
            pins,
            expected=expected,
            shown=args.show or SHOWN,
            python_version=args.python_version,
            pip_args=args.pip_arg,
            timeout_s=args.timeout,
        )
        results.append(result)
        if not args.json:
            print(describe(result), file=sys.stdout if result.ok else sys.stderr, flush=True)
    ok = all(r.ok for r in results)
    if args.json:
        out = {
            "requirement": requirement,
            "python_version": args.python_version,
            "ok": ok,
            "combinations": [asdict(r) | {"seconds": round(r.seconds, 1)} for r in results],
        }
        print(json.dumps(out, indent=2))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
