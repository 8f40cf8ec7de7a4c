"""A small stand-in for the Kubeflow Pipelines v2beta1 REST API, on loopback.

There is no Kubeflow cluster here, so the tests of ``captcha-ocr pipeline
submit`` talk to this instead. It answers only what ``kfp.Client`` asks when it
submits a run (health check, experiments, runs) and records every request, so
a test can check what a real cluster would have received.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

API = "/apis/v2beta1"


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # names in lower case
    body: dict | None


@dataclass
class StandIn:
    """Experiments and runs the stand-in knows, and what it was sent."""

    requests: list[Request] = field(default_factory=list)
    experiments: dict[str, dict] = field(default_factory=dict)
    runs: dict[str, dict] = field(default_factory=dict)
    final_state: str = "SUCCEEDED"

    def answer(self, request: Request) -> tuple[int, dict]:
        self.requests.append(request)
        path = request.path.removeprefix(API)
        if request.method == "GET" and path == "/healthz":
            return 200, {"commit_sha": "stand-in", "tag_name": "2.5.0", "multi_user": False}
        if path == "/experiments" and request.method == "POST":
            experiment_id = f"exp-{len(self.experiments) + 1}"
            experiment = {**request.body, "experiment_id": experiment_id}
            self.experiments[experiment_id] = experiment
            return 200, experiment
        if path == "/experiments" and request.method == "GET":
            found = [e for e in self.experiments.values() if matches(request, e)]
            return 200, {"experiments": found, "total_size": len(found)}
        if path.startswith("/experiments/") and request.method == "GET":
            experiment = self.experiments.get(path.split("/")[2])
            return (200, experiment) if experiment else (404, {"error": "no such experiment"})
        if path == "/runs" and request.method == "POST":
            run_id = f"run-{len(self.runs) + 1}"
            self.runs[run_id] = {**request.body, "run_id": run_id, "state": "PENDING"}
            return 200, self.runs[run_id]
        if path.startswith("/runs/") and request.method == "GET":
            run = self.runs.get(path.split("/")[2])
            if run is None:
                return 404, {"error": "no such run"}
            run["state"] = self.final_state
            return 200, run
        return 404, {"error": f"the stand-in does not serve {request.method} {request.path}"}


def matches(request: Request, experiment: dict) -> bool:
    """The v2beta1 list filter, as far as kfp.Client uses it: display_name equals."""
    for text in request.query.get("filter", []):
        for predicate in json.loads(text).get("predicates", []):
            if experiment.get(predicate["key"]) != predicate.get("stringValue"):
                return False
    return True


def lowercase(headers) -> dict[str, str]:
    return {name.lower(): value for name, value in headers.items()}


def serve(stand_in: StandIn) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def _handle(self, method: str) -> None:
            url = urlparse(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            status, payload = stand_in.answer(
                Request(method, url.path, parse_qs(url.query), lowercase(self.headers), body)
            )
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            self._handle("GET")

        def do_POST(self) -> None:
            self._handle("POST")

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server
