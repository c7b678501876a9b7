"""A GitLab-shaped REST API (v4) on 127.0.0.1: pipelines on a commit and their jobs, scripted over time.

Serves ``GET /api/v4/projects/:id/pipelines?sha=`` (newest first),
``GET /api/v4/projects/:id/pipelines/:pipeline_id/jobs`` (paginated with
``Link``, latest attempts only, as GitLab does without ``include_retried``),
and ``GET /api/v4/projects/:id/jobs/:job_id/trace``. ``:id`` is the
URL-encoded project path. Auth is ``PRIVATE-TOKEN`` (or ``Authorization:
Bearer``); ``429`` with ``Retry-After`` and ``RateLimit-*`` headers can be
scripted with ``limit_next()``.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Step = tuple[Any, ...]


@dataclass
class ScriptedJob:
    id: int
    name: str
    stage: str
    # (seconds after scripting, status); GitLab statuses: created, pending, running,
    # success, failed, canceled, skipped, manual
    timeline: list[Step]
    created: float
    allow_failure: bool = False
    trace: str = ""
    retried_by: int | None = None

    def status(self, now: float) -> str | None:
        current = None
        for step in self.timeline:
            if now - self.created >= step[0]:
                current = step[1]
        return current


@dataclass
class ScriptedPipeline:
    id: int
    project: str
    sha: str
    created: float
    appear_after: float = 0.0
    jobs: list[ScriptedJob] = field(default_factory=list)
    # when set, the pipeline has no jobs and ends in this status (a YAML error, say)
    fixed_status: str | None = None


class FakeGitLab:
    def __init__(self, token: str = "glpat-test-token") -> None:
        self.token = token
        self.pipelines: list[ScriptedPipeline] = []
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.limits: list[int] = []
        self.merge_requests: list[dict[str, Any]] = []
        self.default_branch = "main"
        self._ids = 500
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    def __enter__(self) -> FakeGitLab:
        fake = self

        class Handler(_Handler):
            server_fake = fake

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def api_url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/v4"

    def _next(self) -> int:
        with self._lock:
            self._ids += 1
            return self._ids

    def add_pipeline(
        self,
        sha: str,
        *,
        project: str = "group/sub/widgets",
        appear_after: float = 0.0,
        status: str | None = None,
    ) -> ScriptedPipeline:
        pipeline = ScriptedPipeline(
            self._next(), project, sha, time.monotonic(), appear_after, fixed_status=status
        )
        self.pipelines.append(pipeline)
        return pipeline

    def add_job(
        self,
        pipeline: ScriptedPipeline,
        name: str,
        timeline: Sequence[Step],
        *,
        stage: str = "test",
        allow_failure: bool = False,
        trace: str = "",
    ) -> ScriptedJob:
        job = ScriptedJob(
            self._next(), name, stage, list(timeline), time.monotonic(), allow_failure, trace
        )
        pipeline.jobs.append(job)
        return job

    def limit_next(self, wait: int = 1) -> None:
        self.limits.append(wait)

    # -- views ---------------------------------------------------------------------

    def pipeline_status(self, pipeline: ScriptedPipeline, now: float) -> str:
        if pipeline.fixed_status:
            return pipeline.fixed_status
        statuses = [j.status(now) for j in pipeline.jobs]
        statuses = [s for s in statuses if s is not None]
        if not statuses or all(s == "created" for s in statuses):
            return "created"
        if any(s in ("running", "pending") for s in statuses):
            return "running"
        failed = [j for j in pipeline.jobs if j.status(now) == "failed" and not j.allow_failure]
        if failed:
            return "failed"
        if any(s == "canceled" for s in statuses):
            return "canceled"
        if any(s == "manual" for s in statuses):
            return "manual"
        return "success"


class _Handler(BaseHTTPRequestHandler):
    server_fake: FakeGitLab
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(
        self,
        status: int,
        data: bytes,
        headers: dict[str, str] | None = None,
        ctype: str = "application/json",
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _json(self, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        etag = 'W/"' + hashlib.md5(data).hexdigest() + '"'
        if self.headers.get("If-None-Match") == etag:
            self._send(304, b"", {"ETag": etag})
            return
        self._send(200, data, {"ETag": etag, **(headers or {})})

    def do_POST(self) -> None:
        self._write("POST")

    def do_PUT(self) -> None:
        self._write("PUT")

    def _write(self, method: str) -> None:
        fake = self.server_fake
        url = urllib.parse.urlsplit(self.path)
        fake.requests.append((method, url.path, {k.lower(): v for k, v in self.headers.items()}))
        if self.headers.get("PRIVATE-TOKEN") != fake.token:
            self._send(401, b'{"message":"401 Unauthorized"}')
            return
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        m = re.fullmatch(r"/api/v4/projects/([^/]+)/merge_requests(?:/(\d+))?", url.path)
        if m and method == "POST" and m.group(2) is None:
            if any(
                mr["source_branch"] == body.get("source_branch") and mr["state"] == "opened"
                for mr in fake.merge_requests
            ):
                self._send(
                    409,
                    b'{"message":["Another open merge request already exists for this source branch"]}',
                )
                return
            mr = {
                "iid": len(fake.merge_requests) + 1,
                "project": urllib.parse.unquote(m.group(1)),
                "source_branch": body["source_branch"],
                "target_branch": body["target_branch"],
                "title": body["title"],
                "description": body.get("description", ""),
                "state": "opened",
            }
            mr["draft"] = mr["title"].startswith(("Draft:", "[Draft]", "(Draft)"))
            mr["web_url"] = f"https://gitlab.example/{mr['project']}/-/merge_requests/{mr['iid']}"
            fake.merge_requests.append(mr)
            self._send(201, json.dumps(mr).encode())
            return
        if m and method == "PUT" and m.group(2) is not None:
            found = next((mr for mr in fake.merge_requests if mr["iid"] == int(m.group(2))), None)
            if found is None:
                self._send(404, b'{"message":"404 Not found"}')
                return
            found.update({k: v for k, v in body.items() if k in ("title", "description")})
            found["draft"] = found["title"].startswith(("Draft:", "[Draft]", "(Draft)"))
            self._send(200, json.dumps(found).encode())
            return
        self._send(404, b'{"message":"404 Not found"}')

    def do_GET(self) -> None:
        fake = self.server_fake
        url = urllib.parse.urlsplit(self.path)
        query = {k: v[0] for k, v in urllib.parse.parse_qs(url.query).items()}
        fake.requests.append(("GET", url.path, {k.lower(): v for k, v in self.headers.items()}))
        token = self.headers.get("PRIVATE-TOKEN") or (
            self.headers.get("Authorization") or ""
        ).removeprefix("Bearer ")
        if token != fake.token:
            self._send(401, json.dumps({"message": "401 Unauthorized"}).encode())
            return
        if fake.limits:
            wait = fake.limits.pop(0)
            reset = int(time.time()) + wait
            self._send(
                429,
                b"Retry later",
                {
                    "Retry-After": str(wait),
                    "RateLimit-Remaining": "0",
                    "RateLimit-Reset": str(reset),
                },
                "text/plain",
            )
            return
        now = time.monotonic()
        m = re.fullmatch(r"/api/v4/projects/([^/]+)", url.path)
        if m:
            self._json(
                {
                    "path_with_namespace": urllib.parse.unquote(m.group(1)),
                    "default_branch": fake.default_branch,
                }
            )
            return
        m = re.fullmatch(r"/api/v4/projects/([^/]+)/merge_requests", url.path)
        if m:
            self._json(
                [
                    mr
                    for mr in fake.merge_requests
                    if mr["source_branch"] == query.get("source_branch")
                    and mr["state"] == query.get("state", "opened")
                ]
            )
            return
        m = re.fullmatch(r"/api/v4/projects/([^/]+)/pipelines", url.path)
        if m:
            project = urllib.parse.unquote(m.group(1))
            found = [
                p
                for p in fake.pipelines
                if p.project == project
                and p.sha == query.get("sha")
                and now - p.created >= p.appear_after
            ]
            found.sort(key=lambda p: p.id, reverse=True)
            self._json(
                [
                    {
                        "id": p.id,
                        "iid": p.id - 500,
                        "project_id": 7,
                        "sha": p.sha,
                        "ref": "outloop/fix/run",
                        "status": fake.pipeline_status(p, now),
                        "source": "push",
                        "web_url": f"https://gitlab.example/{project}/-/pipelines/{p.id}",
                    }
                    for p in found
                ]
            )
            return
        m = re.fullmatch(r"/api/v4/projects/([^/]+)/pipelines/(\d+)/jobs", url.path)
        if m:
            pipeline = next((p for p in fake.pipelines if p.id == int(m.group(2))), None)
            if pipeline is None:
                self._send(404, b'{"message":"404 Not found"}')
                return
            jobs = []
            for job in sorted(pipeline.jobs, key=lambda j: j.id, reverse=True):
                status = job.status(now)
                if status is None:
                    continue
                # a retried job is replaced by its retry in the default listing
                if any(
                    j.name == job.name and j.id > job.id and j.status(now) is not None
                    for j in pipeline.jobs
                ):
                    continue
                jobs.append(
                    {
                        "id": job.id,
                        "name": job.name,
                        "stage": job.stage,
                        "status": status,
                        "allow_failure": job.allow_failure,
                        "failure_reason": "script_failure" if status == "failed" else None,
                        "web_url": f"https://gitlab.example/jobs/{job.id}",
                        "pipeline": {"id": pipeline.id, "sha": pipeline.sha},
                    }
                )
            per_page = int(query.get("per_page", "20"))
            page = int(query.get("page", "1"))
            chunk = jobs[(page - 1) * per_page : page * per_page]
            headers = {"X-Total": str(len(jobs)), "X-Page": str(page)}
            if page * per_page < len(jobs):
                rest = {**query, "page": str(page + 1)}
                host, port = self.server.server_address[:2]
                headers["Link"] = (
                    f'<http://{host}:{port}{url.path}?{urllib.parse.urlencode(rest)}>; rel="next"'
                )
                headers["X-Next-Page"] = str(page + 1)
            self._json(chunk, headers)
            return
        m = re.fullmatch(r"/api/v4/projects/([^/]+)/jobs/(\d+)/trace", url.path)
        if m:
            job_found = next(
                (j for p in fake.pipelines for j in p.jobs if j.id == int(m.group(2))), None
            )
            if job_found is None:
                self._send(404, b'{"message":"404 Not found"}')
                return
            self._send(200, job_found.trace.encode(), ctype="text/plain")
            return
        self._send(404, b'{"message":"404 Not found"}')
