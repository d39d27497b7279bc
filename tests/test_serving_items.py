"""``POST /items``: catalog items added over HTTP from their text (the cold-start path of
``darec catalog add``), on tiny sasrec-text, content and DARec runs through FastAPI's TestClient."""

from __future__ import annotations

import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from fastapi.testclient import TestClient

from darec.experiment import run_experiment
from darec.run import RunFolder
from darec.serving.catalog import add_items
from darec.serving.http import create_app
from darec.serving.recommend import Recommender
from tests.conftest import darec_sets, tiny_config, write_tiny_atomic

NEW = {"items": [{"item": "n3", "title": "Item number 3"}, {"item": "nx", "title": "Other"}]}


def text_run(root: Path, llm: Path, model: str, *extra: str) -> Path:
    cfg = tiny_config(
        write_tiny_atomic(root / "tiny"),
        root / "cache",
        f"model.name={model}",
        f"text.encoder={llm}",
        "text.dtype=fp32",
        "text.max_tokens=6",
        "train.epochs=1",
        *extra,
    )
    run_experiment(cfg, root / "run", test=False)
    return root / "run"


@pytest.fixture(scope="module")
def trained_text_run(tmp_path_factory: pytest.TempPathFactory, tiny_llm_dir: Path) -> Path:
    return text_run(tmp_path_factory.mktemp("items"), tiny_llm_dir, "sasrec-text")


@pytest.fixture
def sasrec_text_run(trained_text_run: Path, tmp_path: Path) -> Path:
    """A fresh copy of the trained sasrec-text run (tests add items to it)."""
    shutil.copytree(trained_text_run, tmp_path / "run")
    return tmp_path / "run"


@pytest.fixture
def client(sasrec_text_run: Path) -> Iterator[TestClient]:
    rec = Recommender(sasrec_text_run, device="cpu")
    with TestClient(create_app(rec, max_new_items=3, max_body_bytes=4096)) as c:
        yield c


def _items(answer: dict) -> list[str]:
    return [r["item"] for r in answer["recommendations"]]


def test_added_items_are_ranked_at_once_and_kept_by_the_run(
    client: TestClient, sasrec_text_run: Path
) -> None:
    trained = RunFolder.open(sasrec_text_run).num_items
    client.post("/users/someone/events", json={"item": "i1"})  # a stream started before
    answer = client.post("/items", json=NEW)
    assert answer.status_code == 201, answer.text
    assert answer.json() == {"added": ["n3", "nx"], "items": trained + 2}
    assert client.get("/health").json()["items"] == trained + 2
    assert client.get("/items/nx").json() == {
        "item": "nx",
        "title": "Other",
        "attributes": {"title": "Other"},
    }
    request = {"items": ["i1", "i2"], "k": trained + 2}
    live = client.post("/recommend", json=request).json()
    assert {"n3", "nx"} <= set(_items(live))
    assert {r["item"]: r["title"] for r in live["recommendations"]}["n3"] == "Item number 3"
    # the stream goes on over the grown catalog, and can click a new item
    body = client.post("/users/someone/events", json={"item": "nx", "k": 3}).json()
    assert body["history_length"] == 2 and len(body["recommendations"]) == 3

    # written to the run folder like `darec catalog add`: a restart ranks the same
    assert RunFolder.open(sasrec_text_run).item_ids[-2:] == ["n3", "nx"]
    rec = Recommender(sasrec_text_run, device="cpu")
    with TestClient(create_app(rec)) as restarted:
        again = restarted.post("/recommend", json=request).json()
        assert restarted.get("/items/n3").json()["title"] == "Item number 3"
    assert _items(again) == _items(live)
    for got, want in zip(again["recommendations"], live["recommendations"], strict=True):
        assert got["score"] == pytest.approx(want["score"], abs=1e-5)
    # the batch export names added items with their titles too
    table = rec.recommend_batch(users=["u1"], k=trained + 2)
    assert dict(zip(table["item"], table["title"], strict=True))["nx"] == "Other"


def test_the_server_adds_what_darec_catalog_add_adds(
    tmp_path: Path, tiny_llm_dir: Path, sasrec_text_run: Path
) -> None:
    """The same items through the command on a copy of the run: the same rows."""
    copy = tmp_path / "copy"
    shutil.copytree(sasrec_text_run, copy)
    items_file = tmp_path / "new.csv"
    items_file.write_text("item_id,title\nn3,Item number 3\nnx,Other\n")
    add_items(copy, items_file)
    rec = Recommender(sasrec_text_run, device="cpu")
    rec.add_items({"n3": {"title": "Item number 3"}, "nx": {"title": "Other"}})
    by_command = RunFolder.open(copy).added_items
    by_server = RunFolder.open(sasrec_text_run).added_items
    assert by_command is not None and by_server is not None
    assert by_server.item_ids == by_command.item_ids and by_server.catalog == by_command.catalog
    for name, rows in by_command.rows.items():
        assert torch.allclose(by_server.rows[name], rows, atol=1e-6), name


@pytest.mark.parametrize(
    ("items", "status", "code", "says"),
    [
        ([{"item": "i1", "title": "Again"}], 409, "already_exists", "already in the run's catalog"),
        ([{"item": "n1", "title": "A"}, {"item": "n1", "title": "B"}], 422, "", "given twice"),
        ([{"item": "n1", "title": "   "}], 422, "invalid_request", "'n1' has no text"),
        ([{"item": "n1"}], 422, "", "'n1' has no text"),
        ([{"item": f"n{i}", "title": "A"} for i in range(4)], 422, "", "at most 3 items"),
        ([{"item": "n1", "title": "A", "attributes": {"title": "B"}}], 422, "", "title once"),
        ([], 422, "invalid_request", "at least 1 item"),
        ([{"item": "n1", "title": "x" * 5000}], 413, "payload_too_large", "over the limit"),
    ],
)
def test_refused_additions_change_nothing(
    client: TestClient, sasrec_text_run: Path, items: list, status: int, code: str, says: str
) -> None:
    before = client.get("/health").json()["items"]
    answer = client.post("/items", json={"items": items})
    assert answer.status_code == status, answer.text
    assert answer.json()["error"] == (code or "invalid_request")
    assert says in str(answer.json()["detail"])
    assert client.get("/health").json()["items"] == before
    assert RunFolder.open(sasrec_text_run).added_items is None


def test_an_item_added_by_the_command_meanwhile_is_refused(
    client: TestClient, sasrec_text_run: Path, tmp_path: Path
) -> None:
    items_file = tmp_path / "new.csv"
    items_file.write_text("item_id,title\nn3,Item number 3\n")
    add_items(sasrec_text_run, items_file)  # the server does not know it, the run folder does
    answer = client.post("/items", json=NEW)
    assert answer.status_code == 409 and answer.json()["error"] == "already_exists"
    assert "added to the run already" in answer.json()["detail"]
    assert client.get("/items/n3").status_code == 404  # nothing added to the live catalog
    assert RunFolder.open(sasrec_text_run).item_ids[-1] == "n3"


def test_requests_during_an_addition_see_a_whole_catalog(client: TestClient) -> None:
    """Recommendations answered while items are added rank the catalog before or after."""
    trained = client.get("/health").json()["items"]
    answers: list[dict] = []
    errors: list[BaseException] = []

    def ask() -> None:
        try:
            for _ in range(10):
                body = {"items": ["i1"], "k": 200}
                answers.append(client.post("/recommend", json=body).json())
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ask) for _ in range(3)]
    for t in threads:
        t.start()
    assert client.post("/items", json=NEW).status_code == 201
    for t in threads:
        t.join()
    assert not errors
    sizes = {len(a["recommendations"]) for a in answers}
    assert sizes <= {trained - 1, trained + 1}  # all items but the history's, before or after


def test_content_model_adds_items_over_http(tmp_path: Path, tiny_llm_dir: Path) -> None:
    run = text_run(tmp_path, tiny_llm_dir, "content")
    rec = Recommender(run, device="cpu")
    with TestClient(create_app(rec)) as client:
        assert client.post("/items", json=NEW).status_code == 201
        body = client.post("/recommend", json={"items": ["i3"], "k": 1}).json()
    assert _items(body) == ["n3"]  # the same text as the history's item: cosine 1


def test_darec_adds_items_through_its_item_encoder_over_http(
    tmp_path: Path, tiny_llm_dir: Path
) -> None:
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
        client.post("/users/someone/events", json={"item": "i1"})
        assert client.post("/items", json=NEW).status_code == 201
        streamed = client.post("/users/someone/events", json={"item": "n3", "k": 5}).json()
        fresh = client.post("/recommend", json={"items": ["i1", "n3"], "k": 5}).json()
    model = rec.model
    kept = model.catalog()  # extended with the new items alone, not rebuilt
    rebuilt = model.build_catalog()
    assert torch.allclose(kept.vectors, rebuilt.vectors, atol=1e-4)
    assert kept.keys is not None and rebuilt.keys is not None
    assert torch.allclose(kept.keys, rebuilt.keys, atol=1e-4)
    assert _items(streamed) == _items(fresh)
    restarted = Recommender(tmp_path / "run", device="cpu")  # reads the cache saved after
    again = restarted.recommend(items=["i1", "n3"], k=5)
    assert [r.item for r in again] == _items(fresh)
    for got, want in zip(again, fresh["recommendations"], strict=True):
        assert got.score == pytest.approx(want["score"], abs=1e-4)
