"""Capturing what a case prints, when cases run in threads of this process.

`sys.stdout` and `sys.stderr` are process-wide, and a case that hangs keeps running (a thread cannot be
killed) while later cases run. So instead of swapping the streams per case, a session installs one
router per stream that sends each write to the buffer of the thread that wrote it (`bind`), else to the
running case's buffer (`set_active`: threads a case starts), else to the stream it replaced. A hung case's
late output lands in its own abandoned buffer, never in a later case's or in the report.

Objects that took a reference to `sys.stderr` during a case (a logging handler, say) keep the router,
which after the session writes through to whatever `sys.stderr` is then.
"""

from __future__ import annotations

import io
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field


@dataclass
class Captured:
    """What one bound thread printed."""

    out: io.StringIO = field(default_factory=io.StringIO)
    err: io.StringIO = field(default_factory=io.StringIO)

    def text(self) -> tuple[str, str]:
        return self.out.getvalue(), self.err.getvalue()


class _Router(io.TextIOBase):
    def __init__(self, original, which: str):
        super().__init__()
        self.original = original
        self._which = which  # "out" or "err"
        self._bound: dict[int, list[Captured]] = {}
        self.active: Captured | None = None

    def _target(self):
        stack = self._bound.get(threading.get_ident())
        cap = stack[-1] if stack else self.active
        if cap is not None:
            return getattr(cap, self._which)
        # Not capturing: the stream in place now (a handler that kept this router after the session
        # must not write to a stream since replaced, e.g. a test's closed capture), else the one replaced.
        current = getattr(sys, "stdout" if self._which == "out" else "stderr")
        return self.original if current is self or isinstance(current, _Router) else current

    def routed(self) -> bool:
        stack = self._bound.get(threading.get_ident())
        return bool(stack) or self.active is not None

    # the text stream interface code actually uses
    def write(self, s: str) -> int:
        return self._target().write(s)

    def writelines(self, lines) -> None:
        self._target().writelines(lines)

    def flush(self) -> None:
        self._target().flush()

    def isatty(self) -> bool:
        return False if self.routed() else self.original.isatty()

    def fileno(self) -> int:
        if self.routed():
            raise io.UnsupportedOperation("a captured stream has no file descriptor")
        return self.original.fileno()

    def writable(self) -> bool:
        return True

    # typeshed declares TextIOBase.encoding a plain attribute; at run time it is a read-only descriptor,
    # which this property overrides as io's own text streams do.
    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.original, "encoding", None) or "utf-8"

    def __getattr__(self, name: str):  # e.g. `buffer`, `errors`: the target's
        return getattr(self._target(), name)


_lock = threading.RLock()
_sessions = 0


@contextmanager
def session() -> Iterator[None]:
    """Install the routers for the block (re-entrant: nested sessions share them)."""
    global _sessions
    with _lock:
        if _sessions == 0:
            sys.stdout, sys.stderr = _Router(sys.stdout, "out"), _Router(sys.stderr, "err")
        _sessions += 1
    try:
        yield
    finally:
        with _lock:
            _sessions -= 1
            _uninstall_when_idle()


def _uninstall_when_idle() -> None:
    """Put the real streams back once no session is open and no thread is bound: a hung case's thread
    stays bound, so the routers stay (writing through for everyone else) until it ends, and its late
    output never reaches the real stdout, where it would corrupt `--json`. Called with _lock held."""
    routers = [s for s in (sys.stdout, sys.stderr) if isinstance(s, _Router)]
    if _sessions or any(r._bound for r in routers):
        return
    # Only ours: if someone replaced them meanwhile, theirs stays (and ours writes through).
    if isinstance(sys.stdout, _Router):
        sys.stdout = sys.stdout.original
    if isinstance(sys.stderr, _Router):
        sys.stderr = sys.stderr.original


def _routers() -> list[_Router]:
    routers = [s for s in (sys.stdout, sys.stderr) if isinstance(s, _Router)]
    if len(routers) != 2:
        raise RuntimeError("capture.bind and capture.set_active need a capture.session()")
    return routers


@contextmanager
def bind() -> Iterator[Captured]:
    """Send what this thread prints in the block to a fresh `Captured` (nested binds stack)."""
    cap = Captured()
    ident = threading.get_ident()
    routers = _routers()
    for r in routers:
        r._bound.setdefault(ident, []).append(cap)
    try:
        yield cap
    finally:
        with _lock:
            for r in routers:
                stack = r._bound.get(ident, [])
                if stack and stack[-1] is cap:
                    stack.pop()
                if not stack:
                    r._bound.pop(ident, None)
            _uninstall_when_idle()


def set_active(cap: Captured | None) -> None:
    """Where threads that no `bind` covers write (those a running case starts); None: the real streams."""
    for r in _routers():
        r.active = cap
