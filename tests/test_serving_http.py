"""The HTTP server (darec.serving.http) through FastAPI's TestClient on a tiny SASRec run, and
once for real: `darec serve` as a process on a loopback port, called over HTTP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from darec.cli import app as cli_app
from darec.experiment import run_experiment
from darec.serving.http import create_app, is_loopback
from darec.serving.recommend import Recommender
from tests.conftest import darec_sets, tiny_config, write_tiny_atomic


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("serve")
    cfg = tiny_config(write_tiny_atomic(root / "tiny"), root / "cache", "train.epochs=2")
    run_experiment(cfg, root / "run")
    return root / "run"


@pytest.fixture(scope="module")
def rec(tiny_run: Path) -> Recommender:
    return Recommender(tiny_run, device="cpu")


@pytest.fixture
def client(rec: Recommender) -> Iterator[TestClient]:
    with TestClient(create_app(rec, max_k=50, max_sessions=3, max_body_bytes=4096)) as c:
        yield c


def _items(answer: dict) -> list[str]:
    return [r["item"] for r in answer["recommendations"]]


def test_health_and_openapi(client: TestClient, rec: Recommender) -> None:
    answer = client.get("/health")
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ok",
        "model": "sasrec",
        "items": len(rec.item_ids) - 1,
        "sessions": 0,
    }
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths) == {
        "/health",
        "/metrics",
        "/recommend",
        "/users/{user}/events",
        "/users/{user}/recommendations",
        "/items/{item}",
        "/items",
    }


def test_recommend_for_a_user_and_for_items(client: TestClient, rec: Recommender) -> None:
    answer = client.post("/recommend", json={"user": "u1", "k": 5})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    want = rec.recommend(user="u1", k=5)
    assert _items(body) == [r.item for r in want]
    assert [r["rank"] for r in body["recommendations"]] == [1, 2, 3, 4, 5]
    for got, expected in zip(body["recommendations"], want, strict=True):
        assert got["score"] == pytest.approx(expected.score, abs=1e-6)
        assert got["title"] == f"Item number {got['item'][1:]}"
    assert body["user"] == "u1" and body["history_length"] == len(rec._user_history("u1"))

    request = {"items": ["i1", "i2"], "k": 3, "exclude": ["i3"], "candidates": ["i3", "i4", "i5"]}
    body = client.post("/recommend", json=request).json()
    assert set(_items(body)) == {"i4", "i5"} and body["history_length"] == 2
    want = rec.recommend(items=["i1", "i2"], k=3, exclude=["i3"], candidates=["i3", "i4", "i5"])
    assert _items(body) == [r.item for r in want]


@pytest.mark.parametrize(
    ("request_body", "status", "code", "says"),
    [
        ({"user": "u1", "items": ["i1"]}, 422, "invalid_request", "exactly one of"),
        ({}, 422, "invalid_request", "exactly one of"),
        ({"user": "u1", "k": 0}, 422, "invalid_request", "greater than or equal to 1"),
        ({"user": "u1", "k": 51}, 422, "invalid_request", "k must be <= 50, got 51"),
        ({"user": "u1", "colour": "red"}, 422, "invalid_request", "Extra inputs"),
        ({"user": "x" * 300}, 422, "invalid_request", "at most 256 characters"),
        ({"user": "u\n1"}, 422, "invalid_request", "should match pattern"),
        ({"user": "nobody"}, 404, "unknown_id", "unknown user id 'nobody'"),
        ({"items": ["i1", "nothing"]}, 404, "unknown_id", "unknown item id 'nothing'"),
        ({"items": ["i1"], "candidates": ["zz"]}, 404, "unknown_id", "unknown item id 'zz'"),
    ],
)
def test_recommend_errors(
    client: TestClient, request_body: dict, status: int, code: str, says: str
) -> None:
    answer = client.post("/recommend", json=request_body)
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["error"] == code
    assert says in json.dumps(body["detail"])


def test_malformed_json_too_large_bodies_and_unknown_routes(client: TestClient) -> None:
    answer = client.post(
        "/recommend", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert answer.status_code == 422 and answer.json()["error"] == "invalid_request"
    huge = {"items": ["i1"] * 2000}  # over the test app's 4096 bytes
    answer = client.post("/recommend", json=huge)
    assert answer.status_code == 413
    assert answer.json() == {
        "error": "payload_too_large",
        "detail": "the request body is over the limit of 4096 bytes",
    }

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while reading
        yield b'{"items": ['
        for _ in range(1000):
            yield b'"i1", '
        yield b'"i1"]}'

    answer = client.post("/recommend", content=chunks())
    assert answer.status_code == 413
    answer = client.get("/nowhere")
    assert answer.status_code == 404 and answer.json()["error"] == "not_found"
    answer = client.get("/recommend")
    assert answer.status_code == 405 and answer.json()["error"] == "method_not_allowed"


def test_streamed_events_equal_a_fresh_call(client: TestClient, rec: Recommender) -> None:
    for step, item in enumerate(["i1", "i2", "i3"]):
        answer = client.post("/users/newcomer/events", json={"item": item, "k": 4})
        assert answer.status_code == 200, answer.text
        assert answer.json()["history_length"] == step + 1
    body = answer.json()
    want = rec.recommend(items=["i1", "i2", "i3"], k=4)
    assert _items(body) == [r.item for r in want]
    for got, expected in zip(body["recommendations"], want, strict=True):
        assert got["score"] == pytest.approx(expected.score, abs=1e-5)
    again = client.get("/users/newcomer/recommendations", params={"k": 4}).json()
    assert again == body

    # a user of the training data continues from their history
    history = [rec.item_ids[int(i)] for i in rec._user_history("u2")]
    body = client.post("/users/u2/events", json={"item": "i7", "k": 3, "exclude": ["i8"]}).json()
    assert body["history_length"] == len(history) + 1
    want = rec.recommend(items=[*history, "i7"], k=3, exclude=["i8"])
    assert _items(body) == [r.item for r in want]
    assert client.get("/health").json()["sessions"] == 2


def test_event_errors_and_the_session_limit(client: TestClient, rec: Recommender) -> None:
    answer = client.post("/users/a/events", json={"item": "nothing"})
    assert answer.status_code == 404 and "unknown item id 'nothing'" in answer.json()["detail"]
    assert client.get("/health").json()["sessions"] == 0  # no session for a refused event
    assert client.post("/users/a/events", json={}).status_code == 422
    assert client.post("/users/a/events", json={"item": "i1", "k": 51}).status_code == 422
    answer = client.get("/users/a/recommendations")
    assert answer.status_code == 404 and answer.json()["error"] == "unknown_id"
    # known users answer without a session, from their history
    body = client.get("/users/u3/recommendations", params={"k": 2}).json()
    assert _items(body) == [r.item for r in rec.recommend(user="u3", k=2)]
    assert client.get("/users/u3/recommendations", params={"k": 0}).status_code == 422
    # at most 3 sessions (the test app): the least recently used one goes
    for user in ["a", "b", "c"]:
        client.post(f"/users/{user}/events", json={"item": "i1"})
    client.get("/users/a/recommendations")  # a is now more recent than b
    client.post("/users/d/events", json={"item": "i1"})
    assert client.get("/health").json()["sessions"] == 3
    assert client.get("/users/b/recommendations").status_code == 404
    assert client.get("/users/a/recommendations").status_code == 200


def test_an_event_refused_for_an_unknown_exclusion_is_not_recorded(client: TestClient) -> None:
    """The event's ids are all checked before the stream changes, so a retry counts once."""
    client.post("/users/careful/events", json={"item": "i1"})
    answer = client.post("/users/careful/events", json={"item": "i2", "exclude": ["nothing"]})
    assert answer.status_code == 404 and "unknown item id 'nothing'" in answer.json()["detail"]
    body = client.post("/users/careful/events", json={"item": "i2"}).json()
    assert body["history_length"] == 2


def test_items(client: TestClient) -> None:
    body = client.get("/items/i4").json()
    assert body == {
        "item": "i4",
        "title": "Item number 4",
        "attributes": {"title": "Item number 4"},
    }
    answer = client.get("/items/nothing")
    assert answer.status_code == 404 and answer.json()["error"] == "unknown_id"
    answer = client.post("/items", json={"items": [{"item": "new1", "title": "A new thing"}]})
    assert answer.status_code == 409 and answer.json()["error"] == "cannot_add_items"
    assert "model 'sasrec' cannot add items from text" in answer.json()["detail"]
    assert client.post("/items", json={"items": []}).status_code == 422


def test_api_key(rec: Recommender) -> None:
    with TestClient(create_app(rec, api_key="s3cret")) as client:
        assert client.get("/health").status_code == 200  # liveness needs no key
        for headers in ({}, {"X-API-Key": "wrong"}):
            answer = client.post("/recommend", json={"user": "u1"}, headers=headers)
            assert answer.status_code == 401
            assert answer.json() == {
                "error": "unauthorized",
                "detail": "missing or wrong X-API-Key header",
            }
            assert client.get("/metrics", headers=headers).status_code == 401
            assert client.get("/items/i1", headers=headers).status_code == 401
        ok = {"X-API-Key": "s3cret"}
        assert client.post("/recommend", json={"user": "u1"}, headers=ok).status_code == 200
        assert client.get("/metrics", headers=ok).status_code == 200
        schemes = client.get("/openapi.json").json()["components"]["securitySchemes"]
        assert schemes["APIKeyHeader"]["name"] == "X-API-Key"


def test_metrics(client: TestClient) -> None:
    for _ in range(3):
        client.post("/recommend", json={"user": "u1"})
    client.post("/recommend", json={"user": "nobody"})
    client.get("/items/nothing")
    client.get("/nowhere")
    answer = client.get("/metrics")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.text
    assert 'darec_requests_total{method="POST",endpoint="/recommend",status="200"} 3' in text
    assert 'darec_requests_total{method="POST",endpoint="/recommend",status="404"} 1' in text
    assert 'darec_requests_total{method="GET",endpoint="/items/{item}",status="404"} 1' in text
    assert 'darec_requests_total{method="GET",endpoint="unmatched",status="404"} 1' in text
    assert 'darec_request_duration_seconds_bucket{endpoint="/recommend",le="+Inf"} 4' in text
    assert 'darec_request_duration_seconds_count{endpoint="/recommend"} 4' in text
    assert "# TYPE darec_request_duration_seconds histogram" in text
    assert "darec_sessions 0" in text


def test_is_loopback() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "192.168.1.2", "example.org"]))


def test_serve_refuses_other_interfaces_without_a_key(tiny_run: Path) -> None:
    runner = CliRunner()
    env = {"COLUMNS": "200"}
    out = runner.invoke(cli_app, ["serve", str(tiny_run), "--host", "0.0.0.0"], env=env)
    assert out.exit_code == 2
    assert "--host 0.0.0.0 accepts connections from other machines" in out.output
    assert "--insecure" in out.output
    out = runner.invoke(
        cli_app,
        ["serve", str(tiny_run), "--api-key-env", "DAREC_TEST_NO_SUCH_VARIABLE"],
        env=env,
    )
    assert out.exit_code == 2
    assert "DAREC_TEST_NO_SUCH_VARIABLE: that environment variable is unset" in out.output
    out = runner.invoke(cli_app, ["serve", str(tiny_run), "--threads", "-1"], env=env)
    assert out.exit_code == 2 and "--threads must be >= 0, got -1" in out.output


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _call(url: str, body: dict | None = None, key: str | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    if key is not None:
        request.add_header("X-API-Key", key)
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_serve_end_to_end_over_http(tiny_run: Path, rec: Recommender) -> None:
    port = _free_port()
    env = os.environ | {"DAREC_TEST_KEY": "k3y", "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [
        sys.executable, "-c", "from darec.cli import main; main()", "serve", str(tiny_run),
        "--port", str(port), "--device", "cpu", "--api-key-env", "DAREC_TEST_KEY",
    ]  # fmt: skip
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            assert server.poll() is None, server.communicate()[0].decode()
            try:
                status, health = _call(f"{base}/health")
                break
            except OSError:
                assert time.monotonic() < deadline, "the server did not answer /health in 120 s"
                time.sleep(0.2)
        assert status == 200 and health["model"] == "sasrec"
        status, body = _call(f"{base}/recommend", {"user": "u1", "k": 5}, key="k3y")
        assert status == 200
        assert _items(body) == [r.item for r in rec.recommend(user="u1", k=5)]
        status, body = _call(f"{base}/recommend", {"user": "u1"})
        assert status == 401 and body["error"] == "unauthorized"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=20)


def test_the_server_names_no_model() -> None:
    """Serving is model-agnostic: the HTTP layer reaches models only through the Recommender."""
    import ast

    import darec.serving.http as http_module
    import darec.serving.schemas as schemas_module

    for module in (http_module, schemas_module):
        tree = ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))
        names = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        assert not [n for n in names if n.startswith("darec.models")], module.__name__


def test_darec_streamed_events_over_http(tmp_path: Path, tiny_llm_dir: Path) -> None:
    """DARec's streamed user (one step per event against cached keys/values) answers what a
    fresh call on the whole history does."""
    cfg = tiny_config(
        write_tiny_atomic(tmp_path / "tiny"),
        tmp_path / "cache",
        "train.epochs=1",
        "train.batch_size=16",
        *darec_sets(tiny_llm_dir),
    )
    run_experiment(cfg, tmp_path / "run", test=False)
    rec = Recommender(tmp_path / "run", device="cpu")
    with TestClient(create_app(rec)) as client:
        for item in ["i1", "i2", "i3", "i4"]:
            body = client.post("/users/someone/events", json={"item": item, "k": 5}).json()
        fresh = client.post("/recommend", json={"items": ["i1", "i2", "i3", "i4"], "k": 5}).json()
        assert client.get("/health").json()["model"] == "darec"
    assert _items(body) == _items(fresh)
    for got, want in zip(body["recommendations"], fresh["recommendations"], strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=1e-4)
    # --quantize int8: the same events read int8 weights; scores move by their rounding only
    quantized = Recommender(tmp_path / "run", device="cpu", quantize="int8")
    with TestClient(create_app(quantized)) as client:
        for item in ["i1", "i2", "i3", "i4"]:
            body = client.post("/users/someone/events", json={"item": item, "k": 5}).json()
    scores = {r["item"]: r["score"] for r in fresh["recommendations"]}
    spread = max(scores.values()) - min(scores.values())
    moved = [
        abs(r["score"] - scores[r["item"]]) for r in body["recommendations"] if r["item"] in scores
    ]
    assert len(moved) >= 4 and 0 < max(moved) <= 0.1 * spread + 1e-3


def test_streamed_events_run_on_event_threads(
    rec: Recommender, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A streamed event runs on ``event_threads`` torch threads; other requests and the
    thread count afterwards are untouched (0: the event keeps the server's)."""
    import torch

    from darec.serving.recommend import Session

    seen: list[int] = []
    add = Session.add

    def recording_add(self: Session, item: str) -> None:
        seen.append(torch.get_num_threads())
        add(self, item)

    monkeypatch.setattr(Session, "add", recording_add)
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        item = rec.item_ids[1]
        for threads, expected in ((1, 1), (0, 2)):
            with TestClient(create_app(rec, event_threads=threads)) as client:
                answer = client.post("/users/new-user/events", json={"item": item, "k": 5})
                assert answer.status_code == 200
                assert seen[-1] == expected
                assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
