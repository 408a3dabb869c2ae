"""`ipa ui screenshot`: a PNG of a page as headless Chromium renders it, e.g. the Airflow pipelines view.

    ipa ui screenshot --url http://localhost:8080/plugin/ipa-pipelines --out view.png
    ipa ui screenshot --url http://localhost:8080/ipa/pipelines --out view.png --expect demo-video

`--expect` also loads the page's DOM and fails unless each text is in it (the main document only: inside
the Airflow UI, the view is a frame, so point at /ipa/pipelines itself to check its text). Runs alone as
`python -m ipa_airflow.cli.ui screenshot ...` too.
"""

from __future__ import annotations

import argparse
import sys

from .. import argtypes as at

pixels = at.Whole(200, 10_000, example="1400", what="a size in pixels")
wait_ms = at.Whole(0, 120_000, example="5000", what="a wait in milliseconds")


def add_ui(sub) -> None:
    ui = sub.add_parser("ui", help="the Airflow view in a browser").add_subparsers(dest="ui", required=True)
    p = ui.add_parser("screenshot", help="write a PNG of a page as headless Chromium renders it")
    p.add_argument("--url", required=True, help="the page, e.g. http://localhost:8080/plugin/ipa-pipelines")
    p.add_argument("--out", required=True, type=at.out_file, help="the PNG to write")
    p.add_argument("--width", type=pixels, default=1400)
    p.add_argument("--height", type=pixels, default=1000)
    p.add_argument(
        "--wait-ms", type=wait_ms, default=5000, help="browser time the page gets to load and render"
    )
    p.add_argument(
        "--expect", action="append", default=[], metavar="TEXT", help="fail unless the page's DOM has TEXT"
    )
    p.set_defaults(func=cmd_screenshot)
    d = ui.add_parser(
        "demo-screenshots",
        help="serve the demo's MLflow and Airflow (after `make demo`) and write PNGs of the Airflow view "
        "and of the newest decision run in MLflow",
    )
    d.add_argument("--home", default=".ipa", help="the demo's IPA_HOME (default .ipa)")
    d.add_argument("--out", default="screenshots", help="the folder the PNGs go to")
    d.add_argument(
        "--wait-ms", type=wait_ms, default=20_000, help="browser time each page gets to load and render"
    )
    d.set_defaults(func=cmd_demo_screenshots)


def cmd_screenshot(args) -> int:
    from ..reports.browser import check_answers, colours, dump_dom, screenshot

    check_answers(args.url)
    if args.expect:
        dom = dump_dom(args.url, wait_ms=args.wait_ms)
        missing = [t for t in args.expect if t not in dom]
        if missing:
            raise ValueError(f"{args.url} rendered without {', '.join(map(repr, missing))}")
    out = screenshot(args.url, args.out, width=args.width, height=args.height, wait_ms=args.wait_ms)
    n = colours(out)
    if n <= 1:
        raise ValueError(f"{args.url} rendered a blank page ({out}: one colour)")
    print(f"wrote {out} ({args.width}x{args.height}, {n} colours)")
    return 0


def cmd_demo_screenshots(args) -> int:
    """Both servers on free loopback ports, on the demo's stores (nothing is written to them), stopped
    after: the Airflow view (its frame in the Airflow UI) and the newest decision run's page in MLflow."""
    from pathlib import Path

    from ..reports.demo_servers import newest_decision_url, serving_demo

    home, out = Path(args.home).resolve(), Path(args.out).resolve()
    with serving_demo(home) as (mlflow_url, airflow_url):
        shots = {
            "airflow-pipelines-view.png": f"{airflow_url}/plugin/ipa-pipelines",
            "mlflow-decision-run.png": newest_decision_url(mlflow_url),
        }
        for name, url in shots.items():
            args.url, args.out, args.width, args.height, args.expect = url, out / name, 1500, 1100, []
            cmd_screenshot(args)
    return 0


def main(argv: list[str] | None = None) -> int:
    """`python -m ipa_airflow.cli.ui`: this group alone, with the `ipa` command's error handling."""
    from . import is_user_error

    parser = argparse.ArgumentParser(prog="python -m ipa_airflow.cli.ui")
    add_ui(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["ui", *(argv if argv is not None else sys.argv[1:])])
    try:
        return args.func(args)
    except Exception as exc:
        if not is_user_error(exc):
            raise
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
