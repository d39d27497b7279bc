"""Readers: every format on tiny files written here, and errors that point at file:line."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from darec.config import DataConfig
from darec.data.readers import READERS, detect_format, read_raw, resolve_format, source_files
from darec.data.readers.amazon import category_path
from darec.errors import ConfigError, DataError


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode("utf-8")))
    else:
        path.write_text(text, encoding="utf-8")
    return path


def frame_rows(raw) -> list[tuple[str, str, float]]:
    df = raw.interactions
    return list(zip(df["user"], df["item"], df["time"], strict=True))


def check_frame(df: pd.DataFrame) -> None:
    assert list(df.columns) == ["user", "item", "time"]
    assert pd.api.types.is_string_dtype(df["user"]) and pd.api.types.is_string_dtype(df["item"])
    assert df["time"].dtype == np.float64


# ------------------------------------------------------------------------------------ atomic

INTER = (
    "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
    "u1\ti1\t5\t30\nu1\ti2\t3\t10\n\nu2\ti1\t4\t20\n"
)
ITEM = (
    "item_id:token\ttitle:token_seq\tprice:float\tvec:float_seq\n"
    "i1\tRed Lipstick\t9.5\t1 2\ni2\tBlue Nail Polish\t\t3 4\n"
)


def test_atomic_folder_with_item_file(tmp_path: Path) -> None:
    folder = tmp_path / "shop"
    write(folder / "shop.inter", INTER)
    write(folder / "shop.item", ITEM)
    cfg = DataConfig(path=str(folder))
    assert resolve_format(cfg) == "atomic"
    assert source_files(cfg) == [folder / "shop.inter", folder / "shop.item"]
    raw = read_raw(cfg)
    check_frame(raw.interactions)
    assert frame_rows(raw) == [("u1", "i1", 30.0), ("u1", "i2", 10.0), ("u2", "i1", 20.0)]
    # float_seq is not an attribute; an empty value is left out
    assert raw.catalog == {
        "i1": {"title": "Red Lipstick", "price": "9.5"},
        "i2": {"title": "Blue Nail Polish"},
    }


def test_atomic_file_without_item_or_timestamp_uses_file_order(tmp_path: Path) -> None:
    inter = write(tmp_path / "x.inter", "user_id:token\titem_id:token\nb\tz\na\ty\nb\tx\n")
    raw = read_raw(DataConfig(path=str(inter)))
    assert frame_rows(raw) == [("b", "z", 0.0), ("a", "y", 1.0), ("b", "x", 2.0)]
    assert raw.catalog == {}
    assert source_files(DataConfig(path=str(inter))) == [inter]


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("user_id:token\titem_id:token\ttimestamp:float\na\tb\t1\na\tb\n", 3, "expected 3"),
        ("user_id:token\titem_id:token\ttimestamp:float\na\tb\t1\n\na\tc\tsoon\n", 4, "soon"),
        ("user_id:token\titem_id:token\ttimestamp:float\na\tb\tnan\n", 2, "finite"),
        ("user_id:token\tasin:token\ta\tb\n", 1, "name:type"),
        ("user:token\titem_id:token\nu\ti\n", 1, "user:token, item_id:token"),
        ("", 1, "empty file"),
        ("user_id:token\titem_id:token\n\t\ni\n", 3, "expected 2"),
    ],
)
def test_atomic_errors_point_at_the_line(tmp_path: Path, text: str, line: int, fragment: str):
    path = write(tmp_path / "bad.inter", text)
    with pytest.raises(DataError) as info:
        read_raw(DataConfig(path=str(path)))
    assert info.value.line == line
    assert f"{path}:{line}: " in str(info.value)
    assert fragment in str(info.value)


def test_atomic_reads_many_lines(tmp_path: Path) -> None:
    n = 20_000
    users = np.arange(n) % 5000
    items = np.arange(n) % 7919
    body = "".join(f"u{u}\ti{i}\t{t}\n" for t, (u, i) in enumerate(zip(users, items, strict=True)))
    path = write(tmp_path / "big.inter", "user_id:token\titem_id:token\ttimestamp:float\n" + body)
    raw = read_raw(DataConfig(path=str(path)))
    assert len(raw.interactions) == n
    assert raw.interactions["time"].iloc[-1] == n - 1
    assert raw.interactions["user"].iloc[n - 1] == f"u{users[-1]}"


# ------------------------------------------------------------------------------------ csv


def test_csv_custom_columns_and_item_file(tmp_path: Path) -> None:
    data = write(tmp_path / "log.csv", 'when,who,what,extra\n5,alice,p1,x\n3,bob,"p2",y\n')
    items = write(tmp_path / "items.csv", 'what,title,brand\np1,"Soap, mild",Dove\np2,Shampoo,\n')
    cfg = DataConfig(
        path=str(data),
        item_path=str(items),
        user_column="who",
        item_column="what",
        time_column="when",
    )
    assert resolve_format(cfg) == "csv"
    assert source_files(cfg) == [data, items]
    raw = read_raw(cfg)
    check_frame(raw.interactions)
    assert frame_rows(raw) == [("alice", "p1", 5.0), ("bob", "p2", 3.0)]
    assert raw.catalog == {
        "p1": {"title": "Soap, mild", "brand": "Dove"},
        "p2": {"title": "Shampoo"},
    }


def test_tsv_without_time_column_and_iso_dates(tmp_path: Path) -> None:
    tsv = write(tmp_path / "log.tsv", "user_id\titem_id\nu\ta\nv\tb\n")
    assert frame_rows(read_raw(DataConfig(path=str(tsv)))) == [("u", "a", 0.0), ("v", "b", 1.0)]
    dated = write(tmp_path / "d.csv", "user_id,item_id,timestamp\nu,a,1970-01-02\nu,b,100\n")
    assert frame_rows(read_raw(DataConfig(path=str(dated)))) == [
        ("u", "a", 86400.0),
        ("u", "b", 100.0),
    ]


def test_csv_missing_column_names_file_column_and_header(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "uid,item_id,timestamp\nu,a,1\n")
    with pytest.raises(DataError) as info:
        read_raw(DataConfig(path=str(path)))
    message = str(info.value)
    assert str(path) in message and "'user_id'" in message
    assert "uid, item_id, timestamp" in message


def test_csv_explicit_time_column_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user_id,item_id\nu,a\n")
    with pytest.raises(DataError, match="'ts'"):
        read_raw(DataConfig(path=str(path), time_column="ts"))


def test_csv_bad_time_and_bad_row_report_their_line(tmp_path: Path) -> None:
    # the quoted field spans lines 3-4, so the bad time sits on line 5
    path = write(
        tmp_path / "log.csv",
        'user_id,item_id,timestamp\nu,a,1\nu,"multi\nline",2\n\nu,b,yesterday\n',
    )
    with pytest.raises(DataError) as info:
        read_raw(DataConfig(path=str(path)))
    assert info.value.line == 6 and "yesterday" in str(info.value)
    short = write(tmp_path / "short.csv", "user_id,item_id,timestamp\nu,a,1\nu,b\n")
    with pytest.raises(DataError, match=r"short\.csv:3: expected 3 fields"):
        read_raw(DataConfig(path=str(short)))


# ------------------------------------------------------------------------------------ amazon


def test_amazon_2014_loose_json_with_meta(tmp_path: Path) -> None:
    reviews = [
        {"reviewerID": "A1", "asin": "B1", "reviewerName": "O'Neil", "unixReviewTime": 1391040000},
        {"reviewerID": "A2", "asin": "B2", "helpful": [1, 2], "unixReviewTime": 1391040001},
    ]
    write(tmp_path / "reviews_Beauty_5.json.gz", "".join(f"{r!r}\n" for r in reviews))
    metas = [
        {
            "asin": "B1",
            "title": "Lip Gloss",
            "brand": "Acme",
            "categories": [["Beauty"], ["Beauty", "Makeup", "Lips"], ["Beauty", "Skin", "Face"]],
        },
        {"asin": "B2", "salesRank": {"Beauty": 5}, "categories": [["Beauty", "Hair"]]},
    ]
    write(tmp_path / "meta_Beauty.json.gz", "".join(f"{m!r}\n" for m in metas))
    cfg = DataConfig(path=str(tmp_path / "reviews_Beauty_5.json.gz"))
    assert resolve_format(cfg) == "amazon"
    assert [p.name for p in source_files(cfg)] == [
        "reviews_Beauty_5.json.gz",
        "meta_Beauty.json.gz",
    ]
    raw = read_raw(cfg)
    check_frame(raw.interactions)
    assert frame_rows(raw) == [("A1", "B1", 1391040000.0), ("A2", "B2", 1391040001.0)]
    assert raw.catalog == {
        "B1": {"title": "Lip Gloss", "brand": "Acme", "category": "Beauty > Makeup > Lips"},
        "B2": {"category": "Beauty > Hair"},
    }


def test_amazon_2018_json_lines_plain(tmp_path: Path) -> None:
    lines = [
        {"overall": 5.0, "reviewerID": "R1", "asin": "X1", "unixReviewTime": 1500000000},
        {"overall": 1.0, "reviewerID": "R1", "asin": "X2", "unixReviewTime": 1400000000},
    ]
    path = write(tmp_path / "All_Beauty_5.json", "\n".join(json.dumps(r) for r in lines) + "\n")
    meta = {"asin": "X2", "title": "Comb", "category": ["All Beauty", "Tools"], "brand": ""}
    meta_path = write(tmp_path / "items.jsonl", json.dumps(meta) + "\n")
    raw = read_raw(DataConfig(path=str(path), item_path=str(meta_path)))
    assert frame_rows(raw) == [("R1", "X1", 1.5e9), ("R1", "X2", 1.4e9)]
    assert raw.catalog == {"X2": {"title": "Comb", "category": "All Beauty > Tools"}}


def test_amazon_bad_lines_report_their_line(tmp_path: Path) -> None:
    good = json.dumps({"reviewerID": "A", "asin": "B", "unixReviewTime": 1})
    path = write(tmp_path / "r.json.gz", f"{good}\n\n{{'reviewerID': 'A', 'asin'\n")
    with pytest.raises(DataError, match=r"r\.json\.gz:3: expected one JSON object"):
        read_raw(DataConfig(path=str(path)))
    missing = write(tmp_path / "m.json", f"{good}\n" + json.dumps({"reviewerID": "A", "asin": "B"}))
    with pytest.raises(DataError, match=r"m\.json:2: .*unixReviewTime"):
        read_raw(DataConfig(path=str(missing)))


def test_category_path_picks_the_most_specific() -> None:
    assert category_path([["A", "B"], ["C", "D", "E"], ["F", "G", "H"]]) == "C > D > E"
    assert category_path(["A", "B"]) == "A > B"
    assert category_path([]) == "" and category_path(None) == ""


# ------------------------------------------------------------------------------------ dispatch


def test_detect_format_and_unknown_format(tmp_path: Path) -> None:
    assert detect_format("") == "movielens"
    assert detect_format(str(write(tmp_path / "a.tsv", "x"))) == "csv"
    with pytest.raises(DataError, match="atomic, csv, movielens, amazon"):
        detect_format(str(write(tmp_path / "a.parquet", "x")))
    with pytest.raises(DataError, match="does not exist"):
        detect_format(str(tmp_path / "missing.csv"))
    with pytest.raises(ConfigError, match="valid formats: auto, atomic, csv, movielens, amazon"):
        read_raw(DataConfig(path="x", format="parquet"))  # type: ignore[arg-type]
    assert set(READERS) == {"atomic", "csv", "movielens", "amazon"}


# ------------------------------------------------------------------------------------ movielens

HAS_RECBOLE = importlib.util.find_spec("recbole") is not None


@pytest.mark.skipif(
    not HAS_RECBOLE, reason="MovieLens-100K ships in recbole: pip install --no-deps recbole==1.2.1"
)
def test_movielens_from_the_recbole_wheel() -> None:
    raw = read_raw(DataConfig())
    df = raw.interactions
    check_frame(df)
    assert len(df) == 100_000
    assert df["user"].nunique() == 943 and df["item"].nunique() == 1682
    assert raw.catalog["1"] == {
        "title": "Toy Story",
        "year": "1995",
        "genres": "Animation, Children's, Comedy",
    }


def test_movielens_without_recbole_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match=r"pip install --no-deps recbole==1\.2\.1"):
        read_raw(DataConfig())


def test_movielens_from_a_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ml-100k"
    write(
        folder / "ml-100k.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n1\t10\t4\t100\n",
    )
    write(
        folder / "ml-100k.item",
        "item_id:token\tmovie_title:token_seq\trelease_year:token\t"
        "class:token_seq\n10\tHeat\t1995\tAction Crime\n",
    )
    cfg = DataConfig(path=str(folder))
    assert resolve_format(cfg) == "movielens"
    raw = read_raw(cfg)
    assert frame_rows(raw) == [("1", "10", 100.0)]
    assert raw.catalog == {"10": {"title": "Heat", "year": "1995", "genres": "Action, Crime"}}


def test_atomic_named_time_column_must_exist(tmp_path: Path) -> None:
    path = write(tmp_path / "x.inter", "user_id:token\titem_id:token\ttimestamp:float\nu\ti\t1\n")
    with pytest.raises(DataError, match="time column 'ts'"):
        read_raw(DataConfig(path=str(path), time_column="ts"))


def test_csv_repeated_column_names_are_an_error(tmp_path: Path) -> None:
    path = write(tmp_path / "x.csv", "user_id,item_id,item_id\nu,i,j\n")
    with pytest.raises(DataError, match=r"x.csv:1: .*item_id twice"):
        read_raw(DataConfig(path=str(path)))


# ---------------------------------------------------------------- what a careless user gives


def _gzip_bomb(path: Path, megabytes: int) -> Path:
    """A small .gz file that expands to ``megabytes`` MB of zeros (one endless line)."""
    with gzip.open(path, "wb", compresslevel=9) as handle:
        zeros = bytes(1 << 20)
        for _ in range(megabytes):
            handle.write(zeros)
    return path


@pytest.mark.parametrize("name", ["bomb.csv.gz", "reviews.json.gz"])
def test_a_gzip_bomb_stops_at_the_decompressed_limit(tmp_path: Path, name: str) -> None:
    bomb = _gzip_bomb(tmp_path / name, 50)
    assert bomb.stat().st_size < 200_000  # 50 MB of zeros compress to almost nothing
    cfg = DataConfig(path=str(bomb), max_decompressed_mb=2)
    with pytest.raises(DataError) as info:
        read_raw(cfg)
    message = str(info.value)
    assert str(bomb) in message and "more than 2 MB" in message
    assert "data.max_decompressed_mb" in message


def test_a_gzip_file_within_the_limit_reads_as_before(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv.gz", "user_id,item_id,timestamp\nu,a,2\nu,b,1\n")
    raw = read_raw(DataConfig(path=str(path), max_decompressed_mb=1))
    assert frame_rows(raw) == [("u", "a", 2.0), ("u", "b", 1.0)]


def test_damaged_gzip_is_named(tmp_path: Path) -> None:
    path = tmp_path / "log.csv.gz"
    path.write_bytes(gzip.compress(b"user_id,item_id\nu,a\n" * 100)[:40])
    with pytest.raises(DataError, match=r"log\.csv\.gz: expected a gzip-compressed file"):
        read_raw(DataConfig(path=str(path)))
    path.write_bytes(b"\x1f\x8b\x08\x00" + b"not deflate at all" * 5)
    with pytest.raises(DataError, match="expected a gzip-compressed file"):
        read_raw(DataConfig(path=str(path)))


@pytest.mark.parametrize("column", ["Time", "ts", "event_time", "order_date", "Created_At"])
def test_a_csv_without_the_default_time_column_takes_a_likely_one(
    tmp_path: Path, column: str
) -> None:
    path = write(tmp_path / "log.csv", f"user_id,item_id,{column}\nu,a,20\nu,b,10\n")
    raw = read_raw(DataConfig(path=str(path)))
    assert frame_rows(raw) == [("u", "a", 20.0), ("u", "b", 10.0)]
    (note,) = raw.notes
    assert f"reading the times from column {column!r}" in note
    assert "data.time_column 'timestamp' is not in the header" in note


def test_a_guessed_time_column_that_does_not_parse_says_it_was_guessed(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user_id,item_id,date\nu,a,12/03/2020\n")
    with pytest.raises(DataError) as info:
        read_raw(DataConfig(path=str(path)))
    message = str(info.value)
    assert "log.csv:2:" in message and "'12/03/2020'" in message
    assert "column 'date' was taken for the time column" in message
    assert 'or to "" to use the file order' in message


def test_file_order_is_said_loudly_and_louder_when_users_are_scattered(tmp_path: Path) -> None:
    grouped = write(tmp_path / "g.csv", "user_id,item_id,rating\nu,a,5\nu,b,4\nv,a,3\n")
    (note,) = read_raw(DataConfig(path=str(grouped))).notes
    assert "FILE ORDER" in note and "user_id, item_id, rating" in note
    assert "not together" not in note
    scattered = write(tmp_path / "s.csv", "user_id,item_id\nu,a\nv,b\nu,c\n")
    raw = read_raw(DataConfig(path=str(scattered)))
    assert frame_rows(raw) == [("u", "a", 0.0), ("v", "b", 1.0), ("u", "c", 2.0)]
    (note,) = raw.notes
    assert "user 'u' at lines 2 and 4" in note and "probably not sorted by time" in note
    # file order chosen on purpose: nothing to say
    assert read_raw(DataConfig(path=str(scattered), time_column="")).notes == []


def test_the_time_notes_reach_every_load_even_from_the_cache(tmp_path: Path) -> None:
    from darec.data.dataset import load_dataset
    from darec.errors import DataWarning

    lines = "".join(f"u{u},i{(u + t) % 4},{t}\n" for u in range(3) for t in range(3))
    path = write(tmp_path / "log.csv", "user_id,item_id,when_ts\n" + lines)
    cfg = DataConfig(path=str(path), user_min=1, item_min=1)
    for _ in range(2):  # built, then read from the cache
        with pytest.warns(DataWarning, match="reading the times from column 'when_ts'"):
            ds = load_dataset(cfg, tmp_path / "cache")
        assert ds.notes and ds.num_interactions == 9


def test_the_item_file_may_name_its_id_column_differently(tmp_path: Path) -> None:
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\nu,p1,1\nu,p2,2\n")
    items = write(tmp_path / "items.csv", "asin,title\np1,Soap\np2,Shampoo\n")
    cfg = DataConfig(path=str(path), item_path=str(items))
    with pytest.raises(DataError) as info:
        read_raw(cfg)
    message = str(info.value)
    assert "items.csv:1:" in message and "'item_id'" in message and "asin, title" in message
    assert "set data.item_id_column" in message
    raw = read_raw(DataConfig(path=str(path), item_path=str(items), item_id_column="asin"))
    assert raw.catalog == {"p1": {"title": "Soap"}, "p2": {"title": "Shampoo"}}


def test_an_atomic_item_file_may_name_its_id_column_differently(tmp_path: Path) -> None:
    write(tmp_path / "d" / "d.inter", "user_id:token\titem_id:token\ttimestamp:float\nu\tp1\t1\n")
    write(tmp_path / "d" / "d.item", "iid:token\ttitle:token_seq\np1\tSoap\n")
    with pytest.raises(DataError, match=r"d\.item:1: .*'item_id'.*set data\.item_id_column"):
        read_raw(DataConfig(path=str(tmp_path / "d")))
    raw = read_raw(DataConfig(path=str(tmp_path / "d"), item_id_column="iid"))
    assert raw.catalog == {"p1": {"title": "Soap"}}


def test_an_item_file_matching_no_interaction_id_is_an_error(tmp_path: Path) -> None:
    from darec.data.preprocess import preprocess

    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp\nu,p1,1\nu,p2,2\n")
    items = write(tmp_path / "items.csv", "item_id,title\nX9,Soap\nX8,Shampoo\n")
    cfg = DataConfig(path=str(path), item_path=str(items), user_min=1, item_min=1)
    with pytest.raises(DataError) as info:
        preprocess(read_raw(cfg), cfg, "log")
    message = str(info.value)
    assert f"none of the 2 item ids of {items}" in message and "'X9'" in message
    assert "'p1'" in message and "data.item_id_column" in message
