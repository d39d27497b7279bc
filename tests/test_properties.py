"""Property-based tests: whatever a user feeds the readers and the config, the answer is a
result or the project's own error (DataError, ConfigError), never another exception."""

from __future__ import annotations

import gzip
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from darec.config import Config, DataConfig, apply_overrides, config_from_dict, config_to_dict
from darec.config import load_config as load_toml
from darec.data.preprocess import preprocess
from darec.data.readers import read_raw
from darec.data.types import RawData
from darec.errors import ConfigError, DataError

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# the characters that make CSV, atomic and JSON files interesting
_ALPHABET = st.sampled_from(
    list(",\t\n\r\"' :;{}[]0123456789.-eE+abuxyz_") + ["\x00", "\ufeff", "é", "nan", "inf", "1e999"]
)
_TEXT = st.lists(_ALPHABET, max_size=120).map("".join)
_HEADERS = st.sampled_from(
    [
        "",
        "user_id,item_id,timestamp\n",
        "user_id,item_id\n",
        "user_id,item_id,time\n",
        "user_id:token\titem_id:token\ttimestamp:float\n",
        "user_id:token\titem_id:token\n",
    ]
)


def _read(name: str, content: bytes) -> None:
    """Read ``content`` as the file ``name`` and preprocess it: a dataset or a DataError."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / name
        path.write_bytes(content)
        cfg = DataConfig(path=str(path), user_min=1, item_min=1, max_decompressed_mb=1)
        try:
            raw = read_raw(cfg)
        except DataError:
            return
        assert isinstance(raw, RawData)
        assert list(raw.interactions.columns) == ["user", "item", "time"]
        try:
            preprocess(raw, cfg, "x")
        except DataError:
            pass


@FAST
@given(header=_HEADERS, body=_TEXT, name=st.sampled_from(["d.csv", "d.tsv", "d.inter"]))
def test_any_text_reads_as_data_or_a_data_error(header: str, body: str, name: str) -> None:
    _read(name, (header + body).encode("utf-8"))


@FAST
@given(
    content=st.binary(max_size=200),
    name=st.sampled_from(["d.csv", "d.csv.gz", "d.inter", "d.json", "d.jsonl.gz"]),
)
def test_any_bytes_read_as_data_or_a_data_error(content: bytes, name: str) -> None:
    _read(name, content)


@FAST
@given(header=_HEADERS, body=_TEXT, cut=st.integers(min_value=0, max_value=400))
def test_any_gzip_stream_reads_as_data_or_a_data_error(header: str, body: str, cut: int) -> None:
    packed = gzip.compress((header + body).encode("utf-8"))
    _read("d.csv.gz", packed[: len(packed) - cut % max(1, len(packed))])


@FAST
@given(lines=st.lists(_TEXT, max_size=6))
def test_any_json_lines_read_as_data_or_a_data_error(lines: list[str]) -> None:
    records = ['{"reviewerID": "a", "asin": "b", "unixReviewTime": 1}', *lines]
    _read("reviews.jsonl", "\n".join(records).encode("utf-8"))


# ------------------------------------------------------------------------------------ config


def _keys() -> list[str]:
    def walk(data: dict, prefix: str) -> list[str]:
        out = []
        for key, value in data.items():
            out += walk(value, f"{prefix}{key}.") if isinstance(value, dict) else [prefix + key]
        return out

    return walk(config_to_dict(Config()), "")


_KEY = st.one_of(st.sampled_from(_keys()), _TEXT, st.sampled_from(["data", "model.", "a.b.c"]))
_VALUE = st.one_of(
    _TEXT,
    st.sampled_from(["0", "-1", "1e309", "nan", "inf", "true", "", "1,2", "0.5", "99999999999"]),
)


@FAST
@given(overrides=st.lists(st.tuples(_KEY, _VALUE, st.booleans()), max_size=4))
def test_any_overrides_give_a_config_or_a_config_error(
    overrides: list[tuple[str, str, bool]],
) -> None:
    given_ = [f"{k}={v}" if sep else k + v for k, v, sep in overrides]
    try:
        cfg = apply_overrides(Config(), given_)
    except ConfigError:
        return
    assert isinstance(cfg, Config)


_JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
        _TEXT,
    ),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_TEXT, inner, max_size=3)),
    max_leaves=8,
)


@FAST
@given(
    sections=st.dictionaries(
        st.sampled_from(["data", "model", "train", "eval", "text", "darec", "search", "x"]),
        st.one_of(
            st.dictionaries(
                st.one_of(st.sampled_from(_keys()).map(lambda k: k.split(".")[-1]), _TEXT),
                _JSON,
                max_size=3,
            ),
            _JSON,
        ),
        max_size=3,
    )
)
def test_any_nested_data_gives_a_config_or_a_config_error(sections: dict) -> None:
    try:
        cfg = config_from_dict(sections)
    except ConfigError:
        return
    assert isinstance(cfg, Config)


@FAST
@given(content=st.one_of(_TEXT.map(str.encode), st.binary(max_size=120)))
def test_any_toml_file_gives_a_config_or_a_config_error(content: bytes) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.toml"
        path.write_bytes(b"[train]\n" + content)
        try:
            cfg = load_toml(path)
        except ConfigError:
            return
        assert isinstance(cfg, Config)


@pytest.mark.parametrize("text", ["[train]\nlr = nan\n", "[train]\nlr = inf\n", "x = 1\n"])
def test_known_bad_toml_is_a_config_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError):
        load_toml(path)
