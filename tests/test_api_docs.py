"""Every Python example in docs/api.md runs, on a small SASRec run of MovieLens-100K."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from darec.config import Config, apply_overrides
from darec.experiment import run_experiment

DOC = Path(__file__).resolve().parents[1] / "docs" / "api.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


@pytest.fixture(scope="module")
def ml100k_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("api")
    cfg = apply_overrides(
        Config(),
        [
            "data.format=movielens",
            f"cache_dir={root / 'cache'}",
            "model.hidden_size=16",
            "model.max_seq_len=20",
            "train.epochs=1",
            "train.batch_size=512",
        ],
    )
    run_experiment(cfg, root / "run")
    return root / "run"


def test_the_page_has_examples() -> None:
    assert len(BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_example_runs(index: int, ml100k_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = BLOCKS[index].replace('"runs/sasrec"', repr(str(ml100k_run)))
    exec(compile(code, f"{DOC.name}[{index}]", "exec"), {})
    assert capsys.readouterr().out  # every example shows something
