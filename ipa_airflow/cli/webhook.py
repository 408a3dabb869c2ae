"""`ipa webhook check`: find (or register) the MLflow webhook that starts profiling, have MLflow send its
test delivery to the receiver, and say which step fails: MLflow, the URL it refuses, the secret it cannot
decrypt, or the receiver's answer. The steps and their messages are in ipa_airflow/webhook_check.py."""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from .. import argtypes as at
from . import render


def receiver_url(text: str) -> str:
    """An http(s) URL with a host: where MLflow posts the deliveries."""
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"expected the receiver's http(s) URL as MLflow reaches it, e.g. "
            f"http://airflow-apiserver:8080/ipa/mlflow; got {text!r}"
        )
    return text


def add_webhook(sub) -> None:
    webhook = sub.add_parser("webhook", help="the MLflow webhook that starts profiling: check it end to end")
    webhook = webhook.add_subparsers(dest="webhook", required=True)
    p = webhook.add_parser(
        "check",
        help="find (or --register) the webhook, have MLflow send its test delivery, say which side is wrong",
        description="Exit 0 when MLflow is reachable, the webhook is registered and active, MLflow accepts "
        "its URL and decrypts its secret, and the receiver verified MLflow's signed test delivery; else 1.",
    )
    p.add_argument(
        "--url",
        required=True,
        type=receiver_url,
        help="the receiver's URL as MLflow reaches it, e.g. http://airflow-apiserver:8080/ipa/mlflow",
    )
    p.add_argument(
        "--tracking-uri", type=at.tracking_uri, help="the MLflow server's URL (default: MLFLOW_TRACKING_URI)"
    )
    p.add_argument(
        "--secret",
        help="the webhook's secret for --register (default: IPA_WEBHOOK_SECRET, which the Airflow API "
        "server must have too; prefer the variable: a command line is visible to other users)",
    )
    p.add_argument(
        "--register",
        action="store_true",
        help="register the webhook when none posts to --url, or set its secret, events and status",
    )
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_check)


def cmd_check(args) -> int:
    from ..mlflow_webhooks import WebhookApi
    from ..settings import load_settings
    from ..webhook_check import STEPS, check_webhook

    settings = load_settings(tracking_uri=args.tracking_uri)
    uri = settings.mlflow.tracking_uri
    if urlsplit(uri).scheme not in ("http", "https"):
        raise ValueError(
            f"webhooks are delivered by an MLflow server, and {uri} is not one: give its URL with "
            "--tracking-uri or MLFLOW_TRACKING_URI, e.g. http://mlflow:5000"
        )
    secret = settings.webhook_secret if args.secret is None else args.secret
    if args.register and not secret:
        raise ValueError(
            "--register needs the webhook's secret: set IPA_WEBHOOK_SECRET to the Airflow API server's "
            "value (or pass --secret)"
        )
    result = check_webhook(WebhookApi(uri), args.url, secret=secret, register=args.register)
    if args.json:
        render.print_json(result.to_dict())
    else:
        print(f"MLflow {result.tracking_uri} -> {result.url}")
        width = max(len(label) for label in STEPS.values())
        for step, label in STEPS.items():
            state, detail = result.state(step)
            print(f"  {_MARK[state]:<4}  {label:<{width}}  {detail}")
        failed = [STEPS[s] for s in STEPS if result.state(s)[0] == "fail"]
        print("all steps passed" if result.ok else f"failed: {', '.join(failed) or 'a step was not reached'}")
    return 0 if result.ok else 1


_MARK = {"ok": "ok", "fail": "FAIL", "skipped": "--"}
