"""A real browser for pages we serve: headless Chromium writes a screenshot of a URL, or the DOM it built.

Chromium is a system package (Debian: `apt-get install chromium`; `make services` installs it as root).
`--virtual-time-budget` lets a page (the Airflow UI is a script-built app) fetch and render before the
shot, on Chromium's virtual clock rather than a sleep.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


class BrowserError(RuntimeError):
    """No browser, or it could not load or shoot the page; the message says which."""


def check_answers(url: str, *, timeout_s: float = 30) -> None:
    """Refuse a URL that does not answer, or answers with an error, before the browser turns it into a
    screenshot of its own error page."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout_s):
            pass
    except urllib.error.HTTPError as exc:
        hint = " (the view needs an Airflow login: open it through the UI, /plugin/ipa-pipelines)"
        raise BrowserError(
            f"{url} answered {exc.code} {exc.reason}" + (hint if exc.code in (401, 403) else "")
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise BrowserError(f"cannot reach {url}: {getattr(exc, 'reason', exc)}") from None


def find_browser() -> str | None:
    return next((path for name in BROWSERS if (path := shutil.which(name))), None)


def _run(args: list[str], browser: str | None, timeout_s: float) -> subprocess.CompletedProcess:
    exe = browser or find_browser()
    if exe is None:
        raise BrowserError(
            "no Chromium found (looked for " + ", ".join(BROWSERS) + "); install it, e.g. "
            "`apt-get install chromium` on Debian (or `make services` as root)"
        )
    with tempfile.TemporaryDirectory(prefix="ipa-chromium-") as profile:
        cmd = [
            exe,
            "--headless",
            "--no-sandbox",  # as root in a container there is no user namespace for the sandbox
            "--disable-gpu",
            "--hide-scrollbars",
            "--no-first-run",
            f"--user-data-dir={profile}",  # its own profile: runs side by side do not share a lock
            *args,
        ]
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise BrowserError(f"{exe} did not finish within {timeout_s:g} s") from None


def screenshot(
    url: str,
    out: Path,
    *,
    width: int = 1400,
    height: int = 1000,
    wait_ms: int = 5000,
    browser: str | None = None,
    timeout_s: float = 120,
) -> Path:
    """Write a PNG of `url` as a `width` x `height` window shows it."""
    out = Path(out).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    out.unlink(missing_ok=True)  # so an old file is never taken for this run's
    proc = _run(
        [
            f"--screenshot={out}",
            f"--window-size={width},{height}",
            f"--virtual-time-budget={wait_ms}",
            url,
        ],
        browser,
        timeout_s,
    )
    if proc.returncode != 0 or not out.exists():
        raise BrowserError(f"no screenshot of {url} (exit {proc.returncode}): {_tail(proc.stderr)}")
    return out


def dump_dom(url: str, *, wait_ms: int = 5000, browser: str | None = None, timeout_s: float = 120) -> str:
    """The HTML of `url` after the browser ran its scripts (the main document, not its frames)."""
    proc = _run([f"--virtual-time-budget={wait_ms}", "--dump-dom", url], browser, timeout_s)
    if proc.returncode != 0:
        raise BrowserError(f"could not load {url} (exit {proc.returncode}): {_tail(proc.stderr)}")
    return proc.stdout


def colours(png: Path, *, limit: int = 1 << 16) -> int:
    """How many distinct colours the image has (up to `limit`): 1 for a blank page."""
    from PIL import Image

    with Image.open(png) as img:
        found = img.convert("RGB").getcolors(maxcolors=limit)
    return limit if found is None else len(found)


def _tail(stderr: str) -> str:
    # Chromium logs harmless D-Bus complaints in a container; the last other lines say what went wrong.
    lines = [ln for ln in stderr.splitlines() if "dbus" not in ln.lower()]
    return " | ".join(lines[-3:]) or "no message"
