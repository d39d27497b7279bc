"""Shared fixtures: tiny datasets written to temporary folders, and tiny configs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from darec.config import Config, apply_overrides

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session", autouse=True)
def _one_torch_thread():
    """Tiny models gain nothing from several threads, and spinning OpenMP threads make the suite
    crawl when the machine is busy with other work."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_tiny_atomic(folder: Path, users: int = 40, items: int = 30, seed: int = 0) -> Path:
    """A RecBole atomic dataset with a learnable pattern: users walk the catalog in steps of 1
    or 2 (by user parity) from a random start, so the next item follows from the last one."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    lines = ["user_id:token\titem_id:token\ttimestamp:float"]
    for u in range(users):
        start = int(rng.integers(items))
        step = 1 + u % 2
        length = int(rng.integers(6, 10))
        for t in range(length):
            lines.append(f"u{u}\ti{(start + step * t) % items}\t{1000 + t}")
    (folder / "tiny.inter").write_text("\n".join(lines) + "\n")
    item_lines = ["item_id:token\ttitle:token_seq"]
    item_lines += [f"i{i}\tItem number {i}" for i in range(items)]
    (folder / "tiny.item").write_text("\n".join(item_lines) + "\n")
    return folder


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return write_tiny_atomic(tmp_path / "tiny")


def ndcg_on_test(model: torch.nn.Module, cfg: Config) -> float:
    """Test NDCG@10 of ``model`` (e.g. reloaded from a run) on ``cfg``'s data, evaluated anew."""
    from darec.data.split import leave_one_out
    from darec.evaluation.evaluator import evaluate
    from darec.run import load_data

    split = leave_one_out(load_data(cfg))
    device = torch.device("cpu")
    return evaluate(model, split.test, cfg.eval, cfg.model.max_seq_len, device).metrics["NDCG@10"]


def tiny_config(data: Path, cache: Path, *extra: str) -> Config:
    return apply_overrides(
        Config(),
        [
            f"data.path={data}",
            "data.user_min=3",
            "data.item_min=1",
            f"cache_dir={cache}",
            "model.max_seq_len=8",
            "model.hidden_size=16",
            "model.num_heads=2",
            "model.inner_size=32",
            "model.num_layers=1",
            "model.dropout=0.1",
            "model.attn_dropout=0.1",
            "train.epochs=3",
            "train.batch_size=8",
            "train.lr=0.01",
            "train.patience=0",
            *extra,
        ],
    )


def darec_sets(llm: Path) -> list[str]:
    """A tiny DARec on the tiny LLaMA folder ``llm``: fp32, adapters in the top layer only."""
    return [
        "model.name=darec",
        f"text.encoder={llm}",
        "text.dtype=fp32",
        "darec.adapters=none/none,serial:4",
        "text.max_tokens=6",
        "darec.hard_negatives=3",
    ]


def train_tiny_darec(data: Path, folder: Path, llm: Path, name: str = "run") -> Path:
    """A tiny DARec (``darec_sets``) trained one epoch on ``data`` into ``folder/name``."""
    from darec.experiment import run_experiment

    cfg = tiny_config(data, folder / "cache", *darec_sets(llm), "train.epochs=1")
    run_experiment(cfg, folder / name)
    return folder / name


@pytest.fixture
def tiny_cfg(tiny_data: Path, tmp_path: Path) -> Config:
    return tiny_config(tiny_data, tmp_path / "cache")


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random LLaMA and its tokenizer saved as a local model folder (the path a user's
    own backbone takes)."""
    from tests.tiny_llm import tiny_causal_lm, tiny_tokenizer

    folder = tmp_path_factory.mktemp("tiny-llm")
    tiny_causal_lm(num_layers=2).save_pretrained(folder)
    tiny_tokenizer().save_pretrained(folder)
    return folder
