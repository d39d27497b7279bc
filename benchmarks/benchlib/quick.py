"""The tiny setup of every script's ``--quick`` mode: a smoke run that finishes in seconds.

A quick run trains on the tests' tiny dataset (40 users walking a 30-item catalog) and, where it
needs an LLM, on the tests' tiny random LLaMA (8 layers of width 64, a word-level tokenizer)
instead of SmolLM2; both are written to a temporary folder (``tests/`` must be importable from
the repository root, as it is in a checkout). Its record goes to ``--out``/``--results`` or to
``benchlib.paths.QUICK_RESULTS``, never to benchmarks/results.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from .paths import ROOT

T = TypeVar("T")

TINY_LLM_LAYERS = 8  # as many as the demo's DARec keeps, so its adapter layouts apply as they are


@dataclass(frozen=True)
class Quick:
    """A quick run's tiny data and (optionally) tiny LLM in ``folder``; ``sets()`` points a
    config at them and shrinks the models and the training to match."""

    folder: Path

    @property
    def data(self) -> Path:
        return self.folder / "tiny"

    @property
    def llm(self) -> Path:
        return self.folder / "tiny-llm"

    def data_sets(self) -> list[str]:
        """The tiny dataset, its cache in the quick folder."""
        return [
            f"data.path={self.data}",
            "data.format=atomic",
            "data.user_min=3",
            "data.item_min=1",
            f"cache_dir={self.folder / 'cache'}",
        ]

    def model_sets(self) -> list[str]:
        """Small ID models and short training on one thread (the tests' sizes)."""
        return [
            "model.max_seq_len=8",
            "model.hidden_size=16",
            "model.num_heads=2",
            "model.inner_size=32",
            "model.num_layers=1",
            "train.epochs=1",
            "train.batch_size=8",
            "train.patience=0",
            "train.max_minutes=0",
            "train.threads=1",
            "eval.batch_size=64",
        ]

    def llm_sets(self) -> list[str]:
        """The tiny LLaMA as DARec's backbone, titles (the tiny data's only text) as item text."""
        return [
            f"text.encoder={self.llm}",
            "text.fields=title",
            "text.max_tokens=6",
            "darec.hard_negatives=3",
        ]

    def sets(self) -> list[str]:
        """All of the above: append them last, so that they win."""
        return [*self.data_sets(), *self.model_sets(), *self.llm_sets()]


@contextmanager
def quick_setup(llm: bool = True) -> Iterator[Quick]:
    """A temporary folder with the tiny dataset and (with ``llm``) the tiny LLaMA, removed on
    exit."""
    # the tests' tiny dataset and LLaMA are the quick mode's; imported by name, so that
    # type-checking the benchmarks does not type-check the tests as well
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    conftest = importlib.import_module("tests.conftest")
    tiny_llm = importlib.import_module("tests.tiny_llm")
    with tempfile.TemporaryDirectory(prefix="darec-quick-") as tmp:
        quick = Quick(Path(tmp))
        conftest.write_tiny_atomic(quick.data)
        if llm:
            tiny_llm.tiny_causal_lm(num_layers=TINY_LLM_LAYERS).save_pretrained(quick.llm)
            tiny_llm.tiny_tokenizer().save_pretrained(quick.llm)
        yield quick


def add_quick_args(
    parser: argparse.ArgumentParser,
    default: Path,
    quick: str,
    flag: str = "--out",
    dest: str = "out",
) -> None:
    """``flag`` (``args.<dest>``: where the record goes, ``default`` unless given) and
    ``--quick`` (``quick``: what the smoke run does)."""
    parser.add_argument(flag, dest=dest, type=Path, help=f"the record (default: {default})")
    parser.add_argument("--quick", action="store_true", help=f"smoke run: {quick}")


def with_quick_sets(quick: bool, run: Callable[[list[str]], T], llm: bool = True) -> T:
    """``run(sets)``: in quick mode with the overrides of a tiny setup (``Quick.sets``, with
    the tiny LLaMA where ``llm``) that lasts while it runs, otherwise with none."""
    if not quick:
        return run([])
    with quick_setup(llm) as setup:
        return run(setup.sets())
