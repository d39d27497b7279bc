"""Dataset cache: hits, keys that change with content and options, corrupt entries rebuilt."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import darec.data.dataset as dataset_module
from darec.config import DataConfig
from darec.data.dataset import dataset_key, dataset_name, load_dataset
from darec.data.info import dataset_stats
from darec.data.readers import READERS

INTER = "user_id:token\titem_id:token\ttimestamp:float\n" + "".join(
    f"u{u}\ti{(u + k) % 4}\t{k}\n" for u in range(4) for k in range(3)
)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "tiny.inter").write_text(INTER, encoding="utf-8")
    (folder / "tiny.item").write_text(
        "item_id:token\ttitle:token_seq\ni0\tZero\n", encoding="utf-8"
    )
    return folder


def cfg_for(folder: Path, **kwargs) -> DataConfig:
    return DataConfig(path=str(folder), user_min=1, item_min=1, **kwargs)


def assert_same(a, b) -> None:
    assert a.name == b.name and a.key == b.key
    assert a.user_ids == b.user_ids and a.item_ids == b.item_ids and a.catalog == b.catalog
    for x, y in ((a.offsets, b.offsets), (a.items, b.items), (a.times, b.times)):
        assert x.dtype == y.dtype and np.array_equal(x, y)


def forbid_reading(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(cfg: DataConfig):
        raise AssertionError("the reader ran although the cache should have been used")

    monkeypatch.setitem(READERS, "atomic", boom)


def test_second_load_hits_the_cache(data_dir: Path, tmp_path: Path, monkeypatch) -> None:
    cache = tmp_path / "cache"
    first = load_dataset(cfg_for(data_dir), cache)
    entry = cache / "datasets" / first.key
    assert sorted(p.name for p in entry.iterdir()) == ["arrays.safetensors", "meta.json"]
    assert [p.name for p in (cache / "datasets").iterdir()] == [first.key]  # no temp left
    forbid_reading(monkeypatch)
    second = load_dataset(cfg_for(data_dir), cache)
    assert_same(first, second)
    assert first.catalog[first.item_index("i0")] == {"title": "Zero"}


def test_no_cache_root_or_disabled_never_writes(data_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ds = load_dataset(cfg_for(data_dir, cache=False), cache)
    assert not cache.exists()
    assert_same(ds, load_dataset(cfg_for(data_dir), None))


def test_key_changes_with_content_and_options(data_dir: Path) -> None:
    base = dataset_key(cfg_for(data_dir))
    assert dataset_key(cfg_for(data_dir)) == base
    assert dataset_key(cfg_for(data_dir, name="other")) == base  # a label only
    assert dataset_key(DataConfig(path=str(data_dir), user_min=2, item_min=1)) != base
    assert dataset_key(cfg_for(data_dir, drop_duplicates=False)) != base
    (data_dir / "tiny.item").write_text("item_id:token\ttitle:token_seq\ni0\tNull\n")
    assert dataset_key(cfg_for(data_dir)) != base


def test_changed_file_is_reread(data_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = load_dataset(cfg_for(data_dir), cache)
    with (data_dir / "tiny.inter").open("a") as handle:
        handle.write("u9\ti9\t0\n")
    second = load_dataset(cfg_for(data_dir), cache)
    assert second.key != first.key and second.num_users == first.num_users + 1


@pytest.mark.parametrize("damage", ["truncate_arrays", "bad_json", "drop_meta", "wrong_ids"])
def test_corrupt_entry_is_rebuilt(data_dir: Path, tmp_path: Path, damage: str) -> None:
    cache = tmp_path / "cache"
    first = load_dataset(cfg_for(data_dir), cache)
    entry = cache / "datasets" / first.key
    if damage == "truncate_arrays":
        blob = (entry / "arrays.safetensors").read_bytes()
        (entry / "arrays.safetensors").write_bytes(blob[: len(blob) // 2])
    elif damage == "bad_json":
        (entry / "meta.json").write_text("{not json")
    elif damage == "drop_meta":
        (entry / "meta.json").unlink()
    else:
        meta = json.loads((entry / "meta.json").read_text())
        meta["item_ids"] = meta["item_ids"][:2]
        (entry / "meta.json").write_text(json.dumps(meta))
    again = load_dataset(cfg_for(data_dir), cache)
    assert_same(first, again)
    # and the rebuilt entry is good: a third load reads it
    assert_same(first, dataset_module._load(entry, first.key))


def test_race_loser_keeps_the_winner(data_dir: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ds = load_dataset(cfg_for(data_dir), cache)
    entry = cache / "datasets" / ds.key
    before = (entry / "meta.json").stat().st_mtime_ns
    dataset_module._store(ds, cache / "datasets", entry, replace=False)
    assert (entry / "meta.json").stat().st_mtime_ns == before
    assert [p.name for p in (cache / "datasets").iterdir()] == [ds.key]


def test_names_and_stats(data_dir: Path) -> None:
    assert dataset_name(DataConfig()) == "ml-100k"
    assert dataset_name(DataConfig(path=str(data_dir))) == "tiny"
    assert dataset_name(DataConfig(path="/x/reviews_Beauty_5.json.gz")) == "reviews_Beauty_5"
    assert dataset_name(DataConfig(path="/x/y.csv", name="mine")) == "mine"
    stats = dataset_stats(load_dataset(cfg_for(data_dir), None))
    assert stats["users"] == 4 and stats["items"] == 4 and stats["interactions"] == 12
    assert stats["density"] == pytest.approx(12 / 16)
    assert stats["seq_len_min"] == stats["seq_len_max"] == 3 and stats["seq_len_p90"] == 3.0
    assert stats["item_pop_min"] == stats["item_pop_max"] == 3


def test_text_only_items_have_their_own_key_and_survive_the_cache(
    data_dir: Path, tmp_path: Path, monkeypatch
) -> None:
    (data_dir / "tiny.item").write_text(
        "item_id:token\ttitle:token_seq\ni0\tZero\nnew\tBrand new\n", encoding="utf-8"
    )
    cache = tmp_path / "cache"
    plain = load_dataset(cfg_for(data_dir), cache)
    first = load_dataset(cfg_for(data_dir, keep_text_only_items=True), cache)
    assert first.key != plain.key
    assert first.item_ids == [*plain.item_ids, "new"]
    forbid_reading(monkeypatch)
    assert_same(first, load_dataset(cfg_for(data_dir, keep_text_only_items=True), cache))
