"""A small OpenAI-compatible chat completions server for tests (real HTTP on 127.0.0.1).

Tests drive the real `openai` client against it. Replies come from a script (a list consumed one per
request) and then from a fallback responder; every request body is recorded.

    with LLMServer([Reply.error(429), Reply.json({...})]) as server:
        ...  # base_url=server.url

`rule_grouper` answers every nhl task deterministically by a rule over the class labels (the first
letter, the number of words), so whole trees can be built end to end.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    content: str | None = None  # assistant message text (status 200)
    finish_reason: str = "stop"
    error: str = ""  # error message (status != 200)
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering
    drop: bool = False  # close the connection without answering
    raw: str | None = None  # send this body as it is (e.g. HTML from a proxy), not a completion
    drip: float = 0.0  # send the response one byte every `drip` seconds (a stalling proxy)
    broken: str | None = None  # send this instead of an HTTP response ({auth}: the request's
    # Authorization header, as a server echoing it into a garbled status line), then close

    @staticmethod
    def text(content: str, **kw: Any) -> Reply:
        return Reply(content=content, **kw)

    @staticmethod
    def json(data: Any, **kw: Any) -> Reply:
        return Reply(content=json.dumps(data), **kw)

    @staticmethod
    def body(raw: str, status: int = 200, **kw: Any) -> Reply:
        return Reply(status=status, raw=raw, **kw)

    @staticmethod
    def fail(status: int, error: str = "scripted failure", **kw: Any) -> Reply:
        return Reply(status=status, error=error, **kw)


Responder = Callable[[dict[str, Any]], Reply]


def task_of(body: dict[str, Any]) -> dict[str, Any]:
    """The TASK (JSON) block of the first user message of a request."""
    first_user = next(m["content"] for m in body["messages"] if m["role"] == "user")
    return json.loads(first_user.split("TASK (JSON):\n", 1)[1])


def _key(label: str, level: int) -> str:
    """The rule: level 1 by first-letter range, level 2 by first letter, level 3 by word count."""
    first = label[:1].lower()
    if level == 1:
        for lo, hi in (("a", "e"), ("f", "l"), ("m", "r"), ("s", "z")):
            if lo <= first <= hi:
                return f"names {lo}-{hi}"
        return "names other"
    if level == 2:
        return f"names starting with {first}"
    words = min(len(label.split()), 3)
    return f"{first}: {words}{'+' if words == 3 else ''} word{'s' if words > 1 else ''}"


def _nest(labels: Sequence[str], level: int, depth: int) -> list[dict[str, Any]]:
    buckets: dict[str, list[str]] = {}
    for lab in labels:
        buckets.setdefault(_key(lab, level), []).append(lab)
    if depth == 1:
        return [{"name": k, "classes": v} for k, v in buckets.items()]
    return [{"name": k, "groups": _nest(v, level + 1, depth - 1)} for k, v in buckets.items()]


def rule_answer(body: dict[str, Any]) -> dict[str, Any]:
    task = task_of(body)
    offset = len(task.get("context", []))
    labels = task["classes"]
    if task["kind"] == "group":
        return {"groups": _nest(labels, offset + 1, task["levels_of_groups"])}
    if task["kind"] == "propose":
        names = list(dict.fromkeys(_key(lab, offset + 1) for lab in labels))
        return {"groups": [{"name": n, "description": f"classes whose {n}"} for n in names]}
    if task["kind"] == "assign":
        groups = task["groups"]
        out: dict[str, list[str]] = {}
        for lab in labels:
            want = _key(lab, offset + 1)
            out.setdefault(want if want in groups else groups[0], []).append(lab)
        return {"groups": [{"name": k, "classes": v} for k, v in out.items()]}
    if task["kind"] == "place":  # hybrid: a group whose last name shares the first letter, or keep
        out = {}
        for lab in labels:
            want = place_rule(lab, task["groups"], task["keep"])
            out.setdefault(want, []).append(lab)
        return {"groups": [{"name": k, "classes": v} for k, v in out.items()]}
    raise ValueError(f"unknown task {task['kind']}")


def place_rule(label: str, groups: Sequence[str], keep: str) -> str:
    for g in groups:
        if g != keep and g.split(" > ")[-1][:1].lower() == label[:1].lower():
            return g
    return keep


def rule_grouper(body: dict[str, Any]) -> Reply:
    data = json.dumps(rule_answer(body))
    if "response_format" not in body:  # plain text mode: wrap it like a chatty model would
        return Reply.text(f"Here is the grouping:\n```json\n{data}\n```\nHope this helps!")
    return Reply.text(data)


def exhausted(body: dict[str, Any]) -> Reply:
    return Reply.fail(500, "the test script has no more replies")


class LLMServer:
    """ThreadingHTTPServer on an ephemeral port speaking POST /v1/chat/completions."""

    def __init__(
        self,
        script: Sequence[Reply] = (),
        fallback: Responder = exhausted,
        api_key: str | None = None,
        reject_formats: Sequence[str] = (),
    ) -> None:
        self.script = list(script)
        self.fallback = fallback
        self.api_key = api_key  # when set, other keys get HTTP 401
        self.reject_formats = set(reject_formats)  # response_format types answered with HTTP 400
        self.requests: list[dict[str, Any]] = []
        self.auth_headers: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()  # ends dripping replies when the server shuts down
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> LLMServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._httpd.shutdown()
        self._httpd.server_close()

    def _next(self, body: dict[str, Any]) -> Reply:
        with self._lock:
            self.requests.append(body)
            if self.script:
                return self.script.pop(0)
        return self.fallback(body)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:  # keep test output quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.rstrip("/") != "/v1/chat/completions":
                    self._send(Reply.fail(404, f"no route {self.path}"))
                    return
                auth = self.headers.get("Authorization", "")
                server.auth_headers.append(auth)
                if server.api_key is not None and auth != f"Bearer {server.api_key}":
                    given = auth.removeprefix("Bearer ")
                    self._send(Reply.fail(401, f"Incorrect API key provided: {given}"))
                    return
                fmt = (body.get("response_format") or {}).get("type")
                if fmt in server.reject_formats:
                    with server._lock:
                        server.requests.append(body)
                    self._send(Reply.fail(400, f"response_format {fmt} is not supported"))
                    return
                self._send(server._next(body), body.get("model", "test-model"), auth)

            def _send(self, reply: Reply, model: str = "test-model", auth: str = "") -> None:
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.broken is not None:
                    self.close_connection = True
                    self.wfile.write(reply.broken.replace("{auth}", auth).encode() + b"\r\n\r\n")
                    self.wfile.flush()
                    return
                if reply.drop:
                    self.close_connection = True
                    self.connection.close()
                    return
                if reply.status == 200:
                    payload: dict[str, Any] = {
                        "id": "chatcmpl-test",
                        "object": "chat.completion",
                        "created": int(time.time()),
                        "model": model,
                        "choices": [
                            {
                                "index": 0,
                                "message": {"role": "assistant", "content": reply.content},
                                "finish_reason": reply.finish_reason,
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                else:
                    payload = {"error": {"message": reply.error, "type": "test", "code": None}}
                data = json.dumps(payload).encode() if reply.raw is None else reply.raw.encode()
                if reply.drip:
                    self._drip(reply, data)
                    return
                try:
                    self.send_response(reply.status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(data)))
                    for k, v in reply.headers.items():
                        self.send_header(k, v)
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (timeout)
                    pass

            def _drip(self, reply: Reply, data: bytes) -> None:
                head = (
                    f"HTTP/1.1 {reply.status} OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(data)}\r\n\r\n"
                ).encode()
                self.close_connection = True
                for i in range(len(head + data)):
                    if server._stop.wait(reply.drip):
                        return
                    try:
                        self.wfile.write((head + data)[i : i + 1])
                        self.wfile.flush()
                    except OSError:  # the client gave up
                        return

        return Handler
