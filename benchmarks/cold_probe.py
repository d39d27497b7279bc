"""Can training on warm items beat plain text similarity on items no one has seen? A probe.

    python benchmarks/cold_probe.py            # Amazon Beauty: results/cold_probe.json + docs
    python benchmarks/cold_probe.py --quick    # MovieLens-100K, 1 epoch, not recorded (smoke run)

``benchmarks/cold_start.py`` measures cold targets on test. Choosing how a model should rank
unseen items needs unseen items on *validation* too, without touching those test items, so
this probe makes them: on the same cold split (``--seed``), a second random share of the warm
items (``--probe-fraction``, seed + 1) is taken out of the training sequences as well; the
validation cases whose target is such a *pseudo-cold* item then measure what the test's cold
targets measure (full ranking over every warm item, history excluded), and the other validation
cases measure warm targets. Nothing here reads the test split.

Scorers, all on the content baseline's item text (whitened all-MiniLM-L6-v2 titles) and user
vector (:func:`darec.models.content_prior.text_vectors`, decay ``CONTENT_DECAY``):

- ``content``: the cosine, as the baseline ranks (nothing trained);
- ``metric``: cosine after a learned linear map on each side (``x + x A`` for the user,
  ``t + t B`` for items, both starting at zero, so epoch 0 is ``content``), trained with
  full-softmax cross-entropy over the training items on every next-item step of the training
  sequences, a learned temperature and recency decay;
- ``metric logQ``: the same with log item counts added to the training logits (and left out
  when ranking), so the map learns no popularity that unseen items could not have;
- ``weights``: one learned weight per feature dimension (both sides), the least capacity;
- ``content + transitions``: the cosine plus ``w`` x log of a transition score (how often the
  history's items were followed by each item in training, recency-weighted), pseudo-cold items
  at the score of an item never followed; ``w`` swept.
- ``content-cf``: the product's model of the same two terms (:mod:`darec.models.content_cf`,
  its ``transition_weight`` is ``w`` / 10 here), where each pseudo-cold item borrows the
  transitions into its text neighbours (:mod:`darec.models.text_neighbours`), as items added
  after training do; swept over ``CONTENT_CF_GRID`` (neighbours, temperature, weight). The
  benchmarks' content-cf settings (``benchlib.settings.CONTENT_CF``) are the best of it.

``--reuse`` keeps the learned scorers' curves and the transition sweep of the existing record
(same split) and measures the content-cf grid only (minutes instead of half an hour).

What it measured (docs/results.md, "Cold start: the pseudo-cold probe"): why every learned map
and every blend of warm-only signal loses on unseen items, and that borrowing the neighbours'
transitions (content-cf) is what beats plain text similarity on them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from benchlib.machine import cpu_bf16_flags, cpu_model
from benchlib.records import replace_block, results_path, write_json
from benchlib.settings import COMMON, DATASETS, SASREC_TEXT
from torch import nn

from darec.config import Config, apply_overrides
from darec.data.batching import pad_left
from darec.data.cold import hold_out_items
from darec.evaluation.metrics import metrics_from_ranks
from darec.models.base import ModelContext
from darec.models.content_cf import ContentCF, transition_matrix
from darec.models.content_prior import text_vectors
from darec.models.text_features import features_for
from darec.run import load_data, provenance

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "cold_probe.json"
DOC = ROOT / "docs" / "results.md"
CONTENT_DECAY = 0.5  # the content baseline's, chosen on validation in cold_start.py
MAX_LEN = 50
TRANSITION_WEIGHTS = (0.25, 0.5, 1.0, 2.0)
CONTENT_CF_GRID = (  # (neighbours, neighbour_temperature, transition_weight)
    (10, 0.05, 0.05),
    (20, 0.1, 0.05),
    (20, 0.2, 0.025),
    (20, 0.2, 0.05),
    (20, 0.2, 0.075),
    (40, 0.2, 0.05),
    (20, 0.5, 0.05),
    (40, 0.5, 0.05),
)


class LearnedCosine(nn.Module):
    """Cosine between learned maps of the user's and the items' text vectors (see module doc);
    ``diagonal``: one weight per dimension instead of a full map."""

    def __init__(self, feats: torch.Tensor, diagonal: bool) -> None:
        super().__init__()
        dim = feats.shape[1]
        self.feats = feats
        self.diagonal = diagonal
        shape = (dim,) if diagonal else (dim, dim)
        self.user_map = nn.Parameter(torch.zeros(shape))
        self.item_map = nn.Parameter(torch.zeros(shape))
        self.log_decay = nn.Parameter(torch.tensor(math.log(CONTENT_DECAY)))
        self.scale = nn.Parameter(torch.tensor(10.0))

    def _mapped(self, x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
        return F.normalize(x * weights.exp() if self.diagonal else x + x @ weights, dim=-1)

    def forward(self, history: torch.Tensor) -> torch.Tensor:
        """(B, N + 1) scores of every item for left-padded histories (B, L)."""
        age = torch.arange(history.shape[1] - 1, -1, -1, dtype=self.feats.dtype)
        weight = (self.log_decay * age).exp()[None] * (history > 0)
        user = torch.einsum("bl,bld->bd", weight, self.feats[history])
        items = self._mapped(self.feats, self.item_map)
        return self.scale * self._mapped(user, self.user_map) @ items.T


def target_ranks(
    scores: torch.Tensor, history: torch.Tensor, targets: torch.Tensor
) -> torch.Tensor:
    """1-based full-ranking ranks: padding and the history excluded, ties counted against."""
    scores = scores.clone()
    scores[:, 0] = -torch.inf
    scores.scatter_(1, history, -torch.inf)
    target = scores.gather(1, targets[:, None])
    return (scores >= target).sum(1)  # the target itself counts once


class Probe:
    """The probe's data: features, training steps and the two validation groups."""

    def __init__(self, cfg: Config, cold_seed: int, fraction: float, probe_fraction: float):
        ds = load_data(cfg)
        data = hold_out_items(ds, fraction, cold_seed)
        ctx = ModelContext(data.warm.num_items, data.warm.catalog, data.warm.key)
        self.feats = features_for(cfg, ctx).float()  # (W + 1, D), rows unit or zero
        warm = data.warm.num_items
        rng = np.random.default_rng(cold_seed + 1)
        self.pseudo_cold = np.zeros(warm + 1, dtype=bool)
        self.pseudo_cold[1 + rng.permutation(warm)[: round(probe_fraction * warm)]] = True
        self.train = [s[~self.pseudo_cold[s]] for s in data.train.train]
        valid = data.train.valid
        is_cold = self.pseudo_cold[valid.targets]
        self.groups = {
            name: (
                pad_left([valid.histories[i] for i in np.flatnonzero(rows)], MAX_LEN),
                torch.from_numpy(valid.targets[rows]),
            )
            for name, rows in (("pseudo-cold", is_cold), ("warm", ~is_cold))
        }
        steps = [(s[:t], s[t]) for s in self.train for t in range(1, len(s))]
        self.history = pad_left([h for h, _ in steps], MAX_LEN)
        self.targets = torch.tensor([t for _, t in steps])
        self.counts = torch.bincount(self.targets, minlength=warm + 1).float()
        self.known = torch.from_numpy(~self.pseudo_cold)
        self.known[0] = False
        self.model_cfg = cfg.model
        self.summary = {
            "items": int(ds.num_items),
            "warm_items": warm,
            "pseudo_cold_items": int(self.pseudo_cold.sum()),
            "training_steps": len(self.targets),
            "valid_cases": {name: len(t) for name, (_, t) in self.groups.items()},
        }

    def content(self, history: torch.Tensor) -> torch.Tensor:
        return text_vectors(self.feats, history, CONTENT_DECAY, MAX_LEN) @ self.feats.T

    def measure(self, score: Callable[[torch.Tensor], torch.Tensor]) -> dict:
        """HR@10 and NDCG@10 of ``score`` (histories -> scores of every item) per group."""
        out = {}
        with torch.no_grad():
            for name, (history, targets) in self.groups.items():
                ranks = torch.cat(
                    [
                        target_ranks(score(h), h, t)
                        for h, t in zip(history.split(256), targets.split(256), strict=True)
                    ]
                )
                metrics = metrics_from_ranks(ranks, (10,))
                out[name] = {m: metrics[m] for m in ("HR@10", "NDCG@10")}
        return out

    def transitions(self) -> torch.Tensor:
        """(W + 1, W + 1) row-normalised counts of item j followed by item k in training
        (content-cf's matrix, :func:`darec.models.content_cf.transition_matrix`, dense)."""
        return transition_matrix(self.train, self.feats.shape[0]).to_dense()


def content_cf(probe: Probe, neighbours: int, temperature: float, weight: float) -> dict:
    """The content-cf model counted on the probe's training sequences, every pseudo-cold item
    borrowing the transitions into its text neighbours among the other items."""
    cfg = dataclasses.replace(
        probe.model_cfg,
        name="content-cf",
        max_seq_len=MAX_LEN,
        content_decay=CONTENT_DECAY,
        neighbours=neighbours,
        neighbour_temperature=temperature,
        transition_weight=weight,
    )
    model = ContentCF(cfg, probe.feats.shape[0] - 1, probe.feats)
    model.prepare(probe.train)
    model.borrow_transitions(
        torch.nonzero(~probe.known[1:]).squeeze(1) + 1, torch.nonzero(probe.known).squeeze(1)
    )
    items = torch.arange(probe.feats.shape[0])
    return probe.measure(lambda history: model.score_items(model.encode_users(history), items))


def train_cosine(probe: Probe, diagonal: bool, log_q: bool, epochs: int, lr: float) -> list:
    """Per-epoch validation of one learned scorer (epoch 0: before training = content)."""
    torch.manual_seed(0)
    model = LearnedCosine(probe.feats, diagonal)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    shift = probe.counts.add(1).log() if log_q else torch.zeros_like(probe.counts)
    curve = [{"epoch": 0, **probe.measure(model)}]
    for epoch in range(1, epochs + 1):
        start, total, order = time.monotonic(), 0.0, torch.randperm(len(probe.targets))
        for chunk in order.split(1024):
            logits = (model(probe.history[chunk]) + shift).masked_fill(~probe.known, -torch.inf)
            loss = F.cross_entropy(logits, probe.targets[chunk])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(chunk)
        row = {"epoch": epoch, "loss": total / len(probe.targets), **probe.measure(model)}
        row["seconds"] = round(time.monotonic() - start, 1)
        curve.append(row)
        print(f"  epoch {epoch}: {short(row)}", file=sys.stderr, flush=True)
    return curve


def short(row: dict) -> str:
    return ", ".join(f"{g} {row[g]['NDCG@10']:.4f}" for g in ("pseudo-cold", "warm"))


def markdown(record: dict) -> str:
    lines = [
        "| scorer | pseudo-cold NDCG@10 | warm NDCG@10 | note |",
        "|---|---|---|---|",
    ]
    content = record["content"]
    lines.append(
        f"| content | {content['pseudo-cold']['NDCG@10']:.4f} | "
        f"{content['warm']['NDCG@10']:.4f} | nothing trained |"
    )
    for name, curve in record["learned"].items():
        best = max(curve[1:], key=lambda r: r["pseudo-cold"]["NDCG@10"])
        last = curve[-1]
        lines.append(
            f"| {name} | {best['pseudo-cold']['NDCG@10']:.4f} (best, epoch {best['epoch']}) "
            f"-> {last['pseudo-cold']['NDCG@10']:.4f} (epoch {last['epoch']}) | "
            f"{last['warm']['NDCG@10']:.4f} | trained {last['epoch']} epochs |"
        )
    for weight, row in record["content_plus_transitions"].items():
        lines.append(
            f"| content + transitions, w {weight} | {row['pseudo-cold']['NDCG@10']:.4f} | "
            f"{row['warm']['NDCG@10']:.4f} | nothing trained |"
        )
    for name, row in record.get("content_cf", {}).items():
        lines.append(
            f"| content-cf, {name} | {row['pseudo-cold']['NDCG@10']:.4f} | "
            f"{row['warm']['NDCG@10']:.4f} | counted; pseudo-cold items borrow |"
        )
    s = record["split"]
    lines += [
        "",
        f"{record['dataset']}: {s['pseudo_cold_items']} pseudo-cold items of {s['warm_items']} "
        f"warm ones (cold split seed {record['seed']}); validation cases "
        f"{s['valid_cases']['pseudo-cold']} pseudo-cold, {s['valid_cases']['warm']} warm. "
        "Produced by `python benchmarks/cold_probe.py`.",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="ML-100K, 1 epoch, temp file")
    parser.add_argument("--seed", type=int, default=42, help="the cold split's seed")
    parser.add_argument("--cold-fraction", type=float, default=0.1)
    parser.add_argument("--probe-fraction", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None, help="results file (default per mode)")
    parser.add_argument(
        "--reuse",
        action="store_true",
        help="keep the learned curves and transition sweep of the existing record (same split); "
        "measure the content-cf grid only",
    )
    args = parser.parse_args()
    torch.set_num_threads(2)
    dataset = "ml-100k" if args.quick else "amazon-beauty"
    epochs = 1 if args.quick else args.epochs
    cfg = apply_overrides(
        Config(),
        DATASETS[dataset]
        + COMMON
        + ["model.name=content", *SASREC_TEXT["amazon-beauty"]]
        + (["text.max_tokens=8"] if args.quick else []),
    )
    probe = Probe(cfg, args.seed, args.cold_fraction, args.probe_fraction)
    content = probe.measure(probe.content)
    print(f"content: {short(content)}", file=sys.stderr, flush=True)
    out = results_path(args.out, RESULTS, args.quick)
    old = json.loads(out.read_text()) if args.reuse and out.exists() else None
    if old is not None and (old["split"] != probe.summary or old["seed"] != args.seed):
        raise SystemExit(f"--reuse: {out} holds another split; run without --reuse")
    cf_rows = {}
    for neighbours, temperature, weight in CONTENT_CF_GRID[:1] if args.quick else CONTENT_CF_GRID:
        name = f"{neighbours} neighbours, temperature {temperature}, weight {weight}"
        cf_rows[name] = content_cf(probe, neighbours, temperature, weight)
        print(f"content-cf {name}: {short(cf_rows[name])}", file=sys.stderr, flush=True)
    record = {
        "dataset": dataset,
        "quick": args.quick,
        "seed": args.seed,
        "cold_fraction": args.cold_fraction,
        "probe_fraction": args.probe_fraction,
        "split": probe.summary,
        "content": content,
    }
    if old is not None:
        record.update({k: old[k] for k in ("learned", "content_plus_transitions")})
        record["reused_from_commit"] = old["commit"]
    else:
        record.update(learned_and_transitions(probe, epochs))
    record.update(
        {
            "content_cf": cf_rows,
            "machine": {"cpu_model": cpu_model(), "cpu_bf16_amx_flags": cpu_bf16_flags()},
            "commit": provenance()["commit"],
        }
    )
    write_json(out, record)
    print(f"wrote {out}", file=sys.stderr)
    if out == RESULTS:  # the measurement of record: its table goes into the docs
        replace_block(DOC, "cold-probe", markdown(record), "## Cold start: the pseudo-cold probe")


def learned_and_transitions(probe: Probe, epochs: int) -> dict:
    """The learned scorers' curves and the content + transitions sweep."""
    learned = {}
    for name, diagonal, log_q, lr in (
        ("metric", False, False, 1e-3),
        ("metric logQ", False, True, 1e-3),
        ("weights", True, False, 1e-2),
    ):
        print(name, file=sys.stderr, flush=True)
        learned[name] = train_cosine(probe, diagonal, log_q, epochs, lr)
    table = probe.transitions()
    never = math.log(1e-4)  # an item the history was never followed by

    def mixed(weight: float) -> Callable[[torch.Tensor], torch.Tensor]:
        def score(history: torch.Tensor) -> torch.Tensor:
            age = torch.arange(history.shape[1] - 1, -1, -1, dtype=torch.float32)
            w = CONTENT_DECAY**age * (history > 0)
            follow = torch.einsum("bl,bln->bn", w, table[history])
            follow = follow / w.sum(1, keepdim=True).clamp_min(1e-9)  # empty: all unseen
            follow = follow.clamp_min(1e-4).log().masked_fill(~probe.known, never)
            return 10 * probe.content(history) + weight * follow

        return score

    return {
        "learned": learned,
        "content_plus_transitions": {str(w): probe.measure(mixed(w)) for w in TRANSITION_WEIGHTS},
    }


if __name__ == "__main__":
    main()
