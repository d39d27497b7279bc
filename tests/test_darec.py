"""DARec on a tiny random LLaMA: masks, invariances, equivalence of the two paths, switches,
overfitting one batch."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from darec.config import Config, DarecConfig, ModelConfig
from darec.data.batching import TrainBatch
from darec.models.base import ModelContext
from darec.models.darec import DARec
from darec.models.darec.layout import full_layout, item_slots, stream_mask
from darec.models.darec.runtime import activation_budget
from tests.tiny_llm import tiny_backbone

NUM_ITEMS = 12
ATOL = 2e-5


def catalog() -> list[dict[str, str]]:
    """Items 1..12 with 1-4 words of text; item 5 has none."""
    out: list[dict[str, str]] = [{}]
    for i in range(1, NUM_ITEMS + 1):
        out.append({} if i == 5 else {"title": " ".join(["item", "number", str(i)][: 1 + i % 3])})
    return out


def make(seed: int = 0, layers: int = 2, **darec: object) -> DARec:
    options: dict[str, object] = {"adapters": "serial:4", "adapter_dropout": 0.0}
    options.update(darec)
    cfg = Config(
        model=ModelConfig(
            name="darec",
            max_seq_len=6,
            hidden_size=16,
            num_heads=2,
            inner_size=32,
            num_layers=1,
            dropout=0.0,
            attn_dropout=0.0,
        ),
        darec=DarecConfig(**options),  # type: ignore[arg-type]
    )
    torch.manual_seed(seed)
    model = DARec(cfg, ModelContext(NUM_ITEMS, catalog()), backbone=tiny_backbone(layers))
    model.eval()
    return model


def perturb(model: DARec, seed: int = 1) -> None:
    """Random non-zero adapter weights, so adapters and tokens matter in comparisons."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(torch.randn(p.shape, generator=g) * 0.1)


HISTORY = torch.tensor([[0, 0, 3, 5, 7, 3], [1, 2, 4, 6, 8, 10]])


def batch() -> TrainBatch:
    targets = torch.cat([HISTORY[:, 1:], torch.tensor([[9], [11]])], dim=1)
    targets = targets * (HISTORY > 0)
    return TrainBatch(HISTORY, targets, torch.tensor([1, 2]))


# ---------------------------------------------------------------- masks


def test_item_mask_exact() -> None:
    slots = item_slots(torch.tensor([2, 0]), num_words=2, has_cf=True)
    t, f = True, False
    expected_item0 = [  # [CF, w1, w2, ALIGN]: causal, all valid
        [t, f, f, f],
        [t, t, f, f],
        [t, t, t, f],
        [t, t, t, t],
    ]
    expected_item1 = [  # no words: nobody sees the empty word slots (their rows are unused)
        [t, f, f, f],
        [t, t, f, f],
        [t, f, t, f],
        [t, f, f, t],
    ]
    assert slots.mask[0, 0].tolist() == expected_item0
    assert slots.mask[1, 0].tolist() == expected_item1
    assert slots.positions.tolist() == [[0, 1, 2, 3], [0, 1, 2, 1]]
    assert slots.valid.tolist() == [[t, t, t, t], [t, f, f, t]]


def test_stream_mask_exact() -> None:
    # 1 user, steps [pad, item A (2 valid slots of 3)], one SEQ token per step
    step_valid = torch.tensor([[False, True]])
    item_valid = torch.tensor([[[True, True, True], [True, False, True]]])
    mask = stream_mask(step_valid, item_valid, per_step=1)[0, 0]
    t, f = True, False
    # keys: step-0 slots (3), step-1 slots (3), SEQ_0, SEQ_1
    assert mask.tolist() == [
        [f, f, f, f, f, f, t, f],  # padding step: itself only
        [f, f, f, t, f, t, f, t],  # SEQ_1: its item's valid slots and itself
    ]


def test_full_mask_context_masking_blocks_other_items() -> None:
    step_valid = torch.tensor([[True, True]])
    slots = item_slots(torch.tensor([1, 1]), num_words=1, has_cf=True)
    valid = slots.valid.reshape(1, 2, 3)
    pos = slots.positions.reshape(1, 2, 3)
    layout = full_layout(step_valid, valid, pos, per_step=1, context_masking=True)
    m = layout.mask[0, 0]
    # per step: CF, word, ALIGN, SEQ  -> step 1 starts at index 4
    assert not m[4:7, 0:4].any(), "item tokens of step 1 must not see step 0"
    assert m[7, 0:8].all(), "SEQ_1 sees everything up to itself"
    assert not m[3, 4:].any(), "SEQ_0 sees nothing of step 1"
    assert layout.positions[0].tolist() == [0, 1, 2, 3, 0, 1, 2, 4]
    causal = full_layout(step_valid, valid, pos, per_step=1, context_masking=False)
    assert causal.mask[0, 0].tolist() == torch.ones(8, 8, dtype=torch.bool).tril().tolist()
    assert causal.positions[0].tolist() == list(range(8))


# ---------------------------------------------------------------- invariances


@pytest.mark.parametrize("inject_at", ["first_adapted", "input"])
@pytest.mark.parametrize("cki_user", ["add", "token"])
def test_item_once_equals_full_path_forward_and_grad(inject_at: str, cki_user: str) -> None:
    # adapters in the top layer only, so with first_adapted the tokens enter at layer 1
    model = make(inject_at=inject_at, cki_user=cki_user, adapters="none/none,serial:4")
    perturb(model)
    items = torch.unique(HISTORY)
    fast, align_fast = model._seq_item_once(HISTORY, items)
    slow = model.full_states(HISTORY)[:, :, -1]
    valid = HISTORY > 0
    assert torch.allclose(fast[valid], slow[valid], atol=ATOL)
    g_fast = torch.autograd.grad(fast[valid].sum(), model.seq_token)[0]
    g_slow = torch.autograd.grad(slow[valid].sum(), model.seq_token)[0]
    assert torch.allclose(g_fast, g_slow, atol=1e-4)


def test_item_states_do_not_depend_on_context() -> None:
    model = make()
    perturb(model)
    a = model.full_states(torch.tensor([[1, 2, 7]]))
    b = model.full_states(torch.tensor([[9, 4, 7]]))
    num_slots = model.item_tokens.shape[1] + 2
    # item 7's CF/word/ALIGN slots are the same after different histories
    assert torch.allclose(a[0, 2, :num_slots], b[0, 2, :num_slots], atol=ATOL)
    alone, _ = model._encode_items(torch.tensor([7]), capture=False)
    assert torch.allclose(a[0, 2, num_slots - 1], alone[0], atol=ATOL)
    assert not torch.allclose(a[0, 2, -1], b[0, 2, -1], atol=1e-3), "SEQ must see the history"


def test_without_context_masking_items_see_each_other() -> None:
    model = make(context_masking=False)
    perturb(model)
    a = model.full_states(torch.tensor([[1, 2, 7]]))
    b = model.full_states(torch.tensor([[9, 4, 7]]))
    assert not torch.allclose(a[0, 2, :3], b[0, 2, :3], atol=1e-3)


@pytest.mark.parametrize("context_masking", [True, False])
def test_no_leak_from_future_items(context_masking: bool) -> None:
    model = make(context_masking=context_masking, cki_user="token")
    perturb(model)
    h1 = torch.tensor([[1, 2, 3, 4, 6]])
    h2 = torch.tensor([[1, 2, 3, 9, 11]])
    for seq in (model.sequence_states(h1, torch.unique(h1))[0],):
        other = model.sequence_states(h2, torch.unique(h2))[0]
        assert torch.allclose(seq[0, :3], other[0, :3], atol=ATOL)
        assert not torch.allclose(seq[0, 3:], other[0, 3:], atol=1e-3)


def test_left_padding_does_not_change_states() -> None:
    model = make()
    perturb(model)
    short = model.encode_users(torch.tensor([[3, 4, 7]]))
    padded = model.encode_users(torch.tensor([[0, 0, 3, 4, 7]]))
    assert torch.allclose(short, padded, atol=ATOL)


def test_zero_initialised_adapters_reproduce_the_frozen_backbone() -> None:
    plain = make(adapters="none", inject_at="input")
    adapted = make(adapters="serial:4", inject_at="input")
    adapted.load_state_dict(plain.state_dict(), strict=False)  # same tokens and projections
    a = plain.full_states(HISTORY)
    b = adapted.full_states(HISTORY)
    assert torch.allclose(a, b, atol=1e-6)


# ---------------------------------------------------------------- training and switches


def test_only_adapters_tokens_projections_and_cf_are_trained() -> None:
    model = make(adapters="lora:2/serial:4")
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(not n.startswith("llm.") or "lora_" in n for n in names)
    assert any("lora_" in n for n in names)
    assert {"align_token", "seq_token", "cf_proj.weight", "text_head.weight"} <= names
    assert any(n.startswith("cf.") for n in names)
    assert any(n.startswith("adapters.") for n in names)
    llm_frozen = [n for n, p in model.llm.named_parameters() if not p.requires_grad]
    assert "embed_tokens.weight" in llm_frozen


def test_overfits_one_batch() -> None:
    model = make(seed=3)
    model.prepare([np.array([], dtype=np.int64)] + [h[h > 0].numpy() for h in HISTORY])
    model.train()
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    b = batch()
    first = model.loss(b).item()
    for _ in range(150):
        opt.zero_grad()
        loss = model.loss(b)
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first
    model.eval()
    with torch.no_grad():
        scores = model.score_items(model.encode_users(HISTORY), torch.arange(NUM_ITEMS + 1))
    assert scores.argmax(1).tolist() == [9, 11]


def _grads(model: DARec) -> dict[str, bool]:
    perturb(model)  # the LLM's user head starts at zero, which would block every LLM gradient
    model.train()
    model.zero_grad()
    model.loss(batch()).backward()
    return {
        n: p.grad is not None and bool(p.grad.abs().sum() > 0)
        for n, p in model.named_parameters()
        if p.requires_grad
    }


def test_untrained_darec_scores_like_its_cf_model() -> None:
    model = make()
    items = torch.arange(NUM_ITEMS + 1)
    darec_scores = model.score_items(model.encode_users(HISTORY), items)
    cf_scores = model.cf.score_items(model.cf.encode_users(HISTORY), items)
    text = model.catalog_vectors() - model.cf.item_embedding.weight
    assert text.abs().max() < 1e-3  # the text term starts tiny (normalised, scaled states)
    assert torch.allclose(darec_scores[:, 1:], cf_scores[:, 1:], atol=1e-3)
    assert (
        darec_scores[:, 1:].argsort(1)[:, -3:].tolist()
        == cf_scores[:, 1:].argsort(1)[:, -3:].tolist()
    )


def test_cki_switch() -> None:
    on = _grads(make(cki=True))
    off = _grads(make(cki=False))
    assert on["user_proj.weight"] and not off["user_proj.weight"]
    # without CKI the CF model is not trained on its own loss: its encoder gets no gradient
    assert any(v for n, v in on.items() if n.startswith("cf.encoder"))
    assert not any(v for n, v in off.items() if n.startswith("cf.encoder"))


def test_task_switches_change_only_their_term() -> None:
    b = batch()
    losses = {}
    for name, options in {
        "all": {},
        "no_align": {"align_weight": 0.0},
        "no_hard": {"hard_weight": 0.0},
        "no_cf_loss": {"cf_loss_weight": 0.0},
    }.items():
        model = make(seed=0, **options)
        model.hard_negatives[:, 0] = torch.arange(NUM_ITEMS + 1).roll(1)  # some negatives
        model.hard_negatives[0] = 0
        model.train()
        losses[name] = float(model.loss(b))
    assert losses["no_align"] < losses["all"]
    assert losses["no_hard"] < losses["all"]
    assert losses["no_cf_loss"] < losses["all"]
    # the three auxiliary terms add up: removing each removes exactly its share
    shares = [losses["all"] - losses[k] for k in ("no_align", "no_hard", "no_cf_loss")]
    assert all(s > 0 for s in shares)


def test_cki_user_variants_differ() -> None:
    states = {}
    for variant in ("add", "token", "none"):
        model = make(seed=0, cki_user=variant)
        perturb(model)
        states[variant] = model.encode_users(HISTORY)
    assert not torch.allclose(states["add"], states["none"], atol=1e-4)
    assert not torch.allclose(states["token"], states["none"], atol=1e-4)


def test_checkpoint_state_leaves_out_the_frozen_backbone() -> None:
    model = make(adapters="lora:2/serial:4")
    perturb(model)
    state = model.trained_state()
    assert not any(k.startswith("llm.") and "lora_" not in k for k in state)
    restored = DARec(
        dataclasses.replace(Config(), model=model.cfg, darec=model.dcfg),
        ModelContext(NUM_ITEMS),  # no catalog: tokens come from the checkpoint
        backbone=tiny_backbone(2),
    )
    restored.load_trained_state(state)
    restored.eval()
    assert torch.equal(restored.item_tokens, model.item_tokens)
    assert torch.allclose(restored.encode_users(HISTORY), model.encode_users(HISTORY), atol=1e-6)


def test_reference_path_gives_the_same_loss_and_gradients() -> None:
    # darec.reference_path: whole streams and no frozen-layer cache, the fast paths' oracle
    fast = make(adapters="none/none,serial:4")
    perturb(fast)
    slow = make(adapters="none/none,serial:4", reference_path=True)
    slow.load_state_dict(fast.state_dict())
    assert (fast.item_once, fast.cache_frozen, slow.item_once, slow.cache_frozen) == (
        True,
        True,
        False,
        False,
    )
    fast.train()
    slow.train()
    losses = [model.loss(batch()) for model in (fast, slow)]
    assert torch.allclose(losses[0], losses[1], atol=ATOL)
    grads = [
        torch.autograd.grad(loss, model.seq_token)[0]
        for loss, model in zip(losses, (fast, slow), strict=True)
    ]
    assert torch.allclose(grads[0], grads[1], atol=1e-4)


def test_frozen_layer_cache_changes_nothing() -> None:
    cached = make(adapters="none/none,serial:4")
    perturb(cached)
    plain = make(adapters="none/none,serial:4", reference_path=True)
    plain.load_state_dict(cached.state_dict())
    assert cached.enter == 1
    assert torch.allclose(cached.encode_users(HISTORY), plain.encode_users(HISTORY), atol=1e-6)
    assert cached._entry_words is not None and plain._entry_words is None


@pytest.mark.parametrize("context_masking", [True, False])
def test_activation_checkpointing_gives_the_same_loss_and_gradients(context_masking: bool) -> None:
    # chunks of 3 items (and of 1 sequence in the stream): several chunks on both paths
    options = {"context_masking": context_masking, "item_batch_size": 3, "cki_user": "token"}
    plain = make(checkpoint_activations="never", **options)
    perturb(plain)
    chunked = make(checkpoint_activations="always", **options)
    chunked.load_state_dict(plain.state_dict())
    grads = []
    for model in (plain, chunked):
        model.train()
        saved: list[int] = []  # sizes of the tensors kept for backward outside checkpoints

        def keep(t: torch.Tensor, saved: list[int] = saved) -> torch.Tensor:
            saved.append(t.numel())
            return t

        with torch.autograd.graph.saved_tensors_hooks(keep, lambda t: t):
            loss = model.loss(batch())
        loss.backward()
        named = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        grads.append((loss.detach(), named, sum(saved)))
    (loss_a, grad_a, saved_a), (loss_b, grad_b, saved_b) = grads
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert grad_a.keys() == grad_b.keys()
    assert any(name.startswith("adapters.") for name in grad_a), "adapters must get gradients"
    for name, g in grad_a.items():
        assert torch.allclose(g, grad_b[name], atol=1e-5), name
    assert saved_b < saved_a / 2, "checkpointed layers should keep only their inputs"


def test_checkpointed_chunks_stay_under_the_activation_budget(monkeypatch) -> None:
    """Many trainable layers make a chunk of item_batch_size items too big for the budget: the
    chunks shrink to what it holds (here 2 items), with the same loss and gradients."""
    options = {"item_batch_size": 512, "cki_user": "token"}
    plain = make(checkpoint_activations="never", **options)
    perturb(plain)
    chunked = make(checkpoint_activations="always", **options)
    chunked.load_state_dict(plain.state_dict())
    item_row = chunked.activation_bytes(chunked.item_tokens.shape[1] + 2)
    monkeypatch.setattr(chunked, "step_budget", lambda: 2 * item_row)
    rows: list[int] = []
    stack = chunked._layer_stack

    def counted(h: torch.Tensor, *args: object) -> torch.Tensor:
        if torch.is_grad_enabled():  # the forward pass (the backward one runs it again)
            rows.append(h.shape[0])
        return stack(h, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(chunked, "_layer_stack", counted)
    results = []
    for model in (plain, chunked):
        model.train()
        loss = model.loss(batch())
        loss.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        results.append((loss.detach(), grads))
    items = len(torch.unique(torch.cat([batch().inputs.flatten(), batch().targets.flatten()])))
    assert rows and max(rows) <= 2 and sum(rows) >= items  # many chunks, none over the budget
    (loss_a, grad_a), (loss_b, grad_b) = results
    assert torch.allclose(loss_a, loss_b, atol=1e-6)
    assert grad_a.keys() == grad_b.keys()
    for name, g in grad_a.items():
        assert torch.allclose(g, grad_b[name], atol=1e-5), name
    assert chunked._chunk_budget is None, "the bound belongs to one step"


def test_auto_checkpointing_follows_the_activation_budget() -> None:
    model = make(checkpoint_activations="auto", activation_budget_mb=1)
    c = model.llm.config
    per_token = (12 * c.hidden_size + 4 * c.intermediate_size) * 2 * 4  # 2 layers, fp32
    assert not model.checkpoints(2**20 // per_token)
    assert model.checkpoints(2**20 // per_token + 1)
    derived = make(checkpoint_activations="auto")  # 0: 4096 MB on the CPU
    assert not derived.checkpoints(4096 * 2**20 // per_token)
    assert derived.checkpoints(4096 * 2**20 // per_token + 1)
    assert make(checkpoint_activations="always").checkpoints(1)
    assert not make(checkpoint_activations="never", activation_budget_mb=1).checkpoints(10**9)


def test_derived_activation_budget_follows_the_gpus_free_memory(monkeypatch) -> None:
    """No GPU needed: the CUDA queries are replaced by a 10 GB device with 2 GB allocated."""
    props = type("Props", (), {"total_memory": 10 * 2**30})()
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda device: 2 * 2**30)
    cuda = torch.device("cuda", 0)
    assert activation_budget(0, cuda) == int(0.6 * 8 * 2**30)
    assert activation_budget(100, cuda) == 100 * 2**20  # a set budget wins on every device
    assert activation_budget(0, torch.device("cpu")) == 4096 * 2**20
