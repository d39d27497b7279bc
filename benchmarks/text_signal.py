"""Does the item text carry signal that item IDs lack? SASRec with frozen-LLM text features.

    python benchmarks/text_signal.py                  # MovieLens-100K, the demo's text settings
    python benchmarks/text_signal.py --dataset amazon-beauty --variants sasrec+text

A diagnostic for DARec's accuracy target, not a product model. Each item's text (on ML-100K
the demo's ``title; genres``, 24 tokens; on Beauty the title, 32 tokens) is encoded once by the
demo's frozen backbone (SmolLM2-135M cut to 8 layers): the mean of its final word states,
computed as for DARec's hard negatives, then standardised over the catalog and L2-normalised.
SASRec (the baselines' code and settings, same seed) is then trained with item vectors

- ``sasrec``: ID embedding (the baseline, benchmarks/baselines.py's settings for the dataset);
- ``sasrec+text``: ID embedding + a learned projection of the text features (zero at the start);
- ``text-only``: the projection alone, no ID embedding (how much text predicts by itself).

Selection on validation NDCG@10, the test split read once per run. Writes
``benchmarks/results/text_signal.json`` (the baselines' record schema) and, with
``--write-docs``, a table in docs/results.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F
from baselines import COMMON, DATASETS, SETTINGS, markdown, replace_block
from torch import nn

from darec.config import Config, apply_overrides
from darec.errors import ConfigError
from darec.experiment import run_experiment
from darec.models.base import ModelContext
from darec.models.darec import DARec
from darec.models.registry import MODELS
from darec.models.sasrec import SASRec
from darec.training.checkpoint import atomic_write_json

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "text_signal.json"
DOC = ROOT / "docs" / "results.md"
TEXT = {  # the demo DARec's backbone; its item text on ML-100K, Beauty's only text field
    "ml-100k": ["darec.item_fields=title,genres", "darec.item_max_tokens=24"],
    "amazon-beauty": ["darec.item_fields=title", "darec.item_max_tokens=32"],
}
VARIANTS = {"sasrec": "", "sasrec+text": "id+text", "text-only": "text"}


def text_features(cfg: Config, ctx: ModelContext) -> torch.Tensor:
    """(N + 1, D) standardised, L2-normalised mean word states; row 0 (padding) is zero."""
    darec = DARec(apply_overrides(cfg, ["model.name=darec"]), ctx)
    with torch.no_grad():
        feats = darec._text_embeddings()[1:]
    feats = (feats - feats.mean(0)) / feats.std(0).clamp(min=1e-6)
    return torch.cat([torch.zeros(1, feats.shape[1]), F.normalize(feats, dim=-1)])


class TextItemTable(nn.Module):
    """Drop-in for SASRec's ``item_embedding``: ID rows (optional) + projected text rows."""

    def __init__(self, ids: nn.Embedding, feats: torch.Tensor, with_ids: bool) -> None:
        super().__init__()
        self.ids = ids if with_ids else None
        self.register_buffer("feats", feats)
        self.proj = nn.Linear(feats.shape[1], ids.embedding_dim, bias=False)
        if with_ids:  # start as plain SASRec; training adds what the text explains
            nn.init.zeros_(self.proj.weight)

    @property
    def weight(self) -> torch.Tensor:
        table = self.proj(self.feats)
        return table if self.ids is None else table + self.ids.weight

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        out = self.proj(self.feats[items])
        return out if self.ids is None else out + self.ids(items)


class TextSASRec(SASRec):
    """SASRec whose item vectors include frozen-LLM text features (``--variants``)."""

    mode = "id+text"

    @classmethod
    def from_config(cls, cfg: Config, ctx: ModelContext) -> TextSASRec:
        if ctx.catalog is None:
            raise ConfigError("the text features need the catalog (this model is not reloadable)")
        model = cls(cfg.model, ctx.num_items)
        feats = text_features(cfg, ctx)
        model.item_embedding = TextItemTable(model.item_embedding, feats, cls.mode == "id+text")
        return model


class TextOnlySASRec(TextSASRec):
    mode = "text"


def run_one(dataset: str, variant: str, seed: int, out: Path) -> None:
    """Child process: one training run, its record written to ``out``."""
    MODELS["sasrec-text"] = TextSASRec
    MODELS["sasrec-textonly"] = TextOnlySASRec
    name = {"": "sasrec", "id+text": "sasrec-text", "text": "sasrec-textonly"}[VARIANTS[variant]]
    settings = [
        *SETTINGS[dataset]["sasrec"],
        f"model.name={name}",
        "darec.backbone_layers=8",
        *TEXT[dataset],
    ]
    cfg = apply_overrides(Config(), DATASETS[dataset] + COMMON + settings + [f"train.seed={seed}"])
    with tempfile.TemporaryDirectory() as run_dir:
        _, record = run_experiment(cfg, Path(run_dir) / "run")
    row = record.to_json()
    row.pop("run_dir")
    row["model"] = variant
    row["settings"] = settings
    out.write_text(json.dumps(row))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--dataset", default="ml-100k", choices=list(TEXT))
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--write-docs", action="store_true", help="only rewrite the table")
    parser.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        run_one(args.dataset, args.one[0], args.seed, Path(args.one[1]))
        return
    existing = json.loads(RESULTS.read_text()) if RESULTS.exists() else []

    def key(r: dict) -> tuple:
        return r["dataset"], r["model"], r["seed"]

    for variant in [] if args.write_docs else args.variants.split(","):
        with tempfile.NamedTemporaryFile(suffix=".json") as tmp:
            cmd = [sys.executable, __file__, "--dataset", args.dataset, "--seed", str(args.seed)]
            cmd += ["--one", variant, tmp.name]
            subprocess.run(cmd, check=True)
            record = json.loads(Path(tmp.name).read_text())
        print(json.dumps({"model": variant, "valid NDCG@10": record["valid"]["NDCG@10"]}))
        existing = [r for r in existing if key(r) != key(record)] + [record]
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(RESULTS, existing)
    order = {name: i for i, name in enumerate(VARIANTS)}
    existing.sort(key=lambda r: (r["dataset"] != "ml-100k", order.get(r["model"], 9)))
    replace_block(DOC, "text-signal", markdown(existing), "")


if __name__ == "__main__":
    main()
