"""An in-process Kubernetes API server for tests: enough of apps/v1 Deployments for the real `kubernetes`
client to talk to over HTTP.

Supports get, list (label selectors), create, delete (uid preconditions), server-side apply (field
managers, conflicts, force), strategic-merge and merge patches, resourceVersion and generation,
404/409/422, dryRun=All, namespaces that do not exist, coordination.k8s.io/v1 Leases (get, create,
replace with resourceVersion preconditions), validation of every stored body against the official
schema (kubernetes-validate), a rollout status that completes a set time after each spec change on an
injected clock (or never, for held names), and injected faults: an error status, an answer that never
comes, a dropped connection, and the server dying (connections refused from then on).

Simplifications, on purpose: ownership is tracked per leaf field; fields a manager stops applying are not
removed; lists of objects merge by their `name` key.
"""

from __future__ import annotations

import copy
import itertools
import json
import re
import threading
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import kubernetes_validate
import yaml

PATH = re.compile(r"^/apis/apps/v1/namespaces/(?P<ns>[^/]+)/deployments(?:/(?P<name>[^/]+))?$")
LEASES = re.compile(r"^/apis/coordination.k8s.io/v1/namespaces/(?P<ns>[^/]+)/leases(?:/(?P<name>[^/]+))?$")
HANG, DROP, DIE, STORE_THEN_DROP = "hang", "drop", "die", "store-then-drop"


def _status(code: int, reason: str, message: str, causes: list | None = None) -> dict:
    body = {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "code": code,
        "reason": reason,
        "message": message,
    }
    if causes:
        body["details"] = {"causes": causes}
    return body


def _leaves(obj: Any, prefix: tuple = ()) -> dict[tuple, Any]:
    out: dict[tuple, Any] = {}
    if isinstance(obj, dict):
        if not obj and prefix:
            out[prefix] = {}
        for k, v in obj.items():
            out.update(_leaves(v, (*prefix, k)))
    elif isinstance(obj, list) and obj and all(isinstance(x, dict) and "name" in x for x in obj):
        for x in obj:
            out.update(_leaves(x, (*prefix, f"[name={x['name']}]")))
    else:
        out[prefix] = obj
    return out


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = dict(base)
        for k, v in patch.items():
            if v is None:
                out.pop(k, None)
            else:
                out[k] = _merge(base.get(k), v) if k in base else copy.deepcopy(v)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and patch
        and all(isinstance(x, dict) and "name" in x for x in base + patch)
    ):
        by = {x["name"]: x for x in base}
        merged = [_merge(by[x["name"]], x) if x["name"] in by else copy.deepcopy(x) for x in patch]
        return merged + [x for x in base if x["name"] not in {p["name"] for p in patch}]
    return copy.deepcopy(patch)


def _get(obj: Any, path: tuple) -> Any:
    for part in path:
        if isinstance(part, str) and part.startswith("[name="):
            name = part[len("[name=") : -1]
            obj = next((x for x in obj or [] if x.get("name") == name), None)
        else:
            obj = (obj or {}).get(part) if isinstance(obj, dict) else None
    return obj


class FakeApiServer:
    def __init__(self, *, clock, ready_after_s: float = 5.0):
        self.clock = clock
        self.ready_after_s = ready_after_s
        self.hold: set[str] = set()
        self.objects: dict[tuple[str, str], dict] = {}
        self.owners: dict[tuple[str, str], dict[tuple, str]] = {}
        self.changed_at: dict[tuple[str, str], float] = {}
        self.faults: list[tuple[str, int, dict | None, str]] = []  # (method, code, body, path part)
        # Called with (method, path, query) before each request: None, HANG, DROP, DIE or (code, body).
        self.hooks: list = []
        self.namespaces: set[str] | None = None  # None: every namespace exists
        self.leases: dict[tuple[str, str], dict] = {}
        self.dead = False
        self._released = threading.Event()
        self.requests: list[tuple[str, str, str]] = []  # (method, path, content type)
        self.writes: list[tuple[str, str]] = []  # (method, path) of requests that were not dry runs
        self._rv = itertools.count(1)
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def _send(self, code: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def _handle(self, method: str) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                url = urllib.parse.urlparse(self.path)
                query = dict(urllib.parse.parse_qsl(url.query))
                ctype = self.headers.get("Content-Type", "")
                action = server._hook(method, url.path, query)
                if action == HANG:  # an API server that accepts the request and never answers
                    server._released.wait()
                    return
                if action == STORE_THEN_DROP:  # the write is carried out, its answer is lost
                    with server._lock:
                        server.requests.append((method, url.path, ctype))
                        server.handle(method, url.path, query, ctype, raw)
                    self.close_connection = True
                    return
                if action in (DROP, DIE):  # the connection closes without an answer
                    self.close_connection = True
                    if action == DIE:
                        server.die()
                    return
                with server._lock:
                    server.requests.append((method, url.path, ctype))
                    if method != "GET" and query.get("dryRun") != "All":
                        server.writes.append((method, url.path))
                    code, body = action if action else server.handle(method, url.path, query, ctype, raw)
                self._send(code, body)

            def do_GET(self):
                self._handle("GET")

            def do_POST(self):
                self._handle("POST")

            def do_PATCH(self):
                self._handle("PATCH")

            def do_PUT(self):
                self._handle("PUT")

            def do_DELETE(self):
                self._handle("DELETE")

            def log_message(self, *args):
                pass

        self._handler = Handler
        self._serve(0)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def _serve(self, port: int) -> None:
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.dead = False

    def revive(self) -> None:
        """Serve again on the same port, with everything stored before the server died."""
        self._serve(int(self.url.rsplit(":", 1)[1]))

    def close(self) -> None:
        self._released.set()
        self.die()

    def die(self) -> None:
        """Stop serving: from now on connections are refused."""
        if not self.dead:
            self.dead = True
            self.httpd.shutdown()
            self.httpd.server_close()

    def fail_next(
        self, method: str, code: int, body: dict | None = None, times: int = 1, path: str = ""
    ) -> None:
        """The next `times` requests of `method` (whose path contains `path`) are answered `code`."""
        self.faults += [(method, code, body, path)] * times

    def _hook(self, method, path, query):
        for hook in list(self.hooks):
            action = hook(method, path, query)
            if action is not None:
                return action
        return None

    # ---- request handling (under the lock) ----------------------------------------------------------
    def handle(self, method, path, query, ctype, raw) -> tuple[int, dict]:
        for i, (m, code, body, part) in enumerate(self.faults):
            if m == method and part in path:
                del self.faults[i]
                reason = {
                    403: "Forbidden",
                    404: "NotFound",
                    409: "Conflict",
                    422: "Invalid",
                    429: "TooManyRequests",
                }
                return code, body or _status(
                    code,
                    "InternalError" if code >= 500 else reason.get(code, "BadRequest"),
                    f"injected {code}",
                )
        lease = LEASES.match(path)
        if lease:
            return self._lease(method, lease["ns"], lease["name"], raw)
        match = PATH.match(path)
        if not match:
            return 404, _status(404, "NotFound", f"no route {path}")
        ns, name = match["ns"], match["name"]
        if method != "GET" and self.namespaces is not None and ns not in self.namespaces:
            return 404, _status(404, "NotFound", f'namespaces "{ns}" not found')
        if method == "DELETE":
            return self._delete(ns, name, raw)
        if method == "GET" and name is None:
            return 200, self._list(ns, query.get("labelSelector", ""))
        if method == "GET":
            obj = self._read(ns, name)
            return (
                (200, obj) if obj else (404, _status(404, "NotFound", f'deployments.apps "{name}" not found'))
            )
        try:
            body = yaml.safe_load(raw) if raw else {}
        except yaml.YAMLError as exc:
            return 400, _status(400, "BadRequest", f"cannot parse body: {exc}")
        dry = query.get("dryRun") == "All"
        if method == "POST":
            key = (ns, body.get("metadata", {}).get("name", ""))
            if key in self.objects:
                return 409, _status(409, "AlreadyExists", f'deployments.apps "{key[1]}" already exists')
            return self._store(key, None, body, query.get("fieldManager", "unknown"), dry)
        if method == "PATCH":
            key = (ns, name)
            current = self.objects.get(key)
            manager = query.get("fieldManager", "")
            if "apply-patch" in ctype:
                if not manager:
                    return 400, _status(400, "BadRequest", "fieldManager is required for apply patch")
                forced = query.get("force", "").lower() in ("true", "1", "t")  # as Go's ParseBool
                conflicts = [] if forced else self._conflicts(key, body, manager)
                if conflicts:
                    return 409, _status(
                        409, "Conflict", f"Apply failed with {len(conflicts)} conflict(s)", conflicts
                    )
                return self._store(key, current, body, manager, dry)
            if current is None:
                return 404, _status(404, "NotFound", f'deployments.apps "{name}" not found')
            return self._store(key, current, body, manager or "kubectl-edit", dry)
        return 405, _status(405, "MethodNotAllowed", method)

    def _delete(self, ns, name, raw) -> tuple[int, dict]:
        key = (ns, name)
        current = self.objects.get(key)
        if current is None:
            return 404, _status(404, "NotFound", f'deployments.apps "{name}" not found')
        want = ((json.loads(raw) if raw else {}).get("preconditions") or {}).get("uid")
        if want and want != current["metadata"]["uid"]:
            return 409, _status(409, "Conflict", f"Precondition failed: UID in precondition: {want}")
        del self.objects[key]
        self.owners.pop(key, None)
        self.changed_at.pop(key, None)
        return 200, _status(200, "Success", "deleted") | {"status": "Success"}

    def _lease(self, method, ns, name, raw) -> tuple[int, dict]:
        if self.namespaces is not None and ns not in self.namespaces:
            return 404, _status(404, "NotFound", f'namespaces "{ns}" not found')
        key = (ns, name)
        current = self.leases.get(key)
        if method == "GET" and name:
            if current is None:
                return 404, _status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
            return 200, copy.deepcopy(current)
        body = json.loads(raw) if raw else {}
        if method == "POST":
            key = (ns, body.get("metadata", {}).get("name", ""))
            if key in self.leases:
                return 409, _status(409, "AlreadyExists", f'leases "{key[1]}" already exists')
        elif method == "PUT":
            if current is None:
                return 404, _status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found')
            if body.get("metadata", {}).get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return 409, _status(
                    409,
                    "Conflict",
                    f'Operation cannot be fulfilled on leases "{name}": the object has been modified',
                )
        else:
            return 405, _status(405, "MethodNotAllowed", method)
        meta = body.setdefault("metadata", {})
        meta.pop("resourceVersion", None)
        try:
            kubernetes_validate.validate(body, kubernetes_validate.latest_version(), strict=True)
        except kubernetes_validate.ValidationError as exc:
            return 422, _status(422, "Invalid", f"Lease is invalid: {exc.message}")
        meta["namespace"] = ns
        meta["resourceVersion"] = str(next(self._rv))
        self.leases[key] = body
        return (201 if method == "POST" else 200), copy.deepcopy(body)

    def _conflicts(self, key, body, manager) -> list[dict]:
        current = self.objects.get(key)
        if current is None:
            return []
        owners = self.owners.get(key, {})
        causes = []
        for path, value in _leaves(body).items():
            owner = owners.get(path)
            if owner and owner != manager and _get(current, path) != value:
                field = "." + ".".join(str(p) for p in path)
                causes.append(
                    {"reason": "FieldManagerConflict", "message": f'conflict with "{owner}"', "field": field}
                )
        return causes

    def _store(self, key, current, body, manager, dry) -> tuple[int, dict]:
        if body.get("kind") not in (None, "Deployment") or body.get("apiVersion") not in (None, "apps/v1"):
            return 400, _status(400, "BadRequest", "only apps/v1 Deployments are served here")
        new = _merge(copy.deepcopy(current) if current else {}, body)
        new.pop("status", None)
        meta = new.setdefault("metadata", {})
        meta["name"], meta["namespace"] = key[1], key[0]
        for field in ("generation", "resourceVersion", "uid", "creationTimestamp", "managedFields"):
            meta.pop(field, None)
        try:
            kubernetes_validate.validate(
                {k: v for k, v in new.items()}, kubernetes_validate.latest_version(), strict=True
            )
        except kubernetes_validate.ValidationError as exc:
            where = ".".join(str(p) for p in exc.path)
            return 422, _status(
                422, "Invalid", f'Deployment.apps "{key[1]}" is invalid: {where}: {exc.message}'
            )
        old_meta = (current or {}).get("metadata", {})
        spec_changed = current is None or current.get("spec") != new.get("spec")
        meta["generation"] = old_meta.get("generation", 0) + (1 if spec_changed else 0)
        meta["uid"] = old_meta.get("uid") or str(uuid.uuid4())
        meta["creationTimestamp"] = old_meta.get("creationTimestamp") or "2026-01-01T00:00:00Z"
        changed = (
            current is None
            or {k: v for k, v in new.items() if k != "status"}
            != {k: v for k, v in current.items() if k not in ("status",)}
            or spec_changed
        )
        meta["resourceVersion"] = str(next(self._rv)) if changed else old_meta.get("resourceVersion")
        new["status"] = copy.deepcopy((current or {}).get("status", {}))
        owners = dict(self.owners.get(key, {}))
        for path in _leaves(body):
            owners[path] = manager
        meta["managedFields"] = [
            {"manager": m, "operation": "Apply", "apiVersion": "apps/v1"}
            for m in sorted(set(owners.values()))
        ]
        if dry:
            return 200, new
        self.objects[key] = new
        self.owners[key] = owners
        if spec_changed:
            self.changed_at[key] = self.clock()
        return (201 if current is None else 200), self._read(*key)

    def _read(self, ns, name) -> dict | None:
        obj = self.objects.get((ns, name))
        if obj is None:
            return None
        status = obj.setdefault("status", {})
        replicas = obj["spec"].get("replicas", 1)
        status["observedGeneration"] = obj["metadata"]["generation"]
        if (
            name not in self.hold
            and self.clock() - self.changed_at.get((ns, name), -1e18) >= self.ready_after_s
        ):
            status.update(
                replicas=replicas,
                updatedReplicas=replicas,
                readyReplicas=replicas,
                availableReplicas=replicas,
            )
        else:
            status["updatedReplicas"] = 0
        return copy.deepcopy(obj)

    def _list(self, ns, selector) -> dict:
        want = dict(p.split("=", 1) for p in selector.split(",") if "=" in p)
        items = [
            self._read(*k)
            for k in sorted(self.objects)
            if k[0] == ns
            and all(self.objects[k]["metadata"].get("labels", {}).get(a) == b for a, b in want.items())
        ]
        return {
            "kind": "DeploymentList",
            "apiVersion": "apps/v1",
            "metadata": {"resourceVersion": "1"},
            "items": items,
        }
