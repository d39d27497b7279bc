"""The search space: one categorical choice per (layer group, slot), generated from the adapter
registry, plus optional learning rate and task weights.

A slot's choices are every allowed registered architecture, with each size of
``search.sizes`` for sized ones: ``none``, ``serial:8``, ``serial:16``, ..., ``ia3``. A new
architecture in :data:`~darec.models.adapters.ARCHITECTURES` appears here without any change to
this module. Layers are searched in groups of ``search.group_size`` adjacent layers (the last
group may be shorter); a group's choice applies to each of its layers.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import optuna

from darec.config import Config, SearchConfig, apply_overrides
from darec.errors import ConfigError
from darec.models.adapters import (
    ARCHITECTURES,
    SLOTS,
    AdapterLayout,
    LayerAdapters,
    SlotSpec,
    format_layout,
    parse_layout,
)

__all__ = [
    "SearchSpace",
    "build_space",
    "known_layouts",
    "slot_choices",
    "BASE_SPEC",
]

BASE_SPEC = "serial:16"
"""DARec_base's adapter in every slot (the paper's fixed design)."""

TASK_WEIGHTS = ("align_weight", "hard_weight")
"""Weights of the searchable auxiliary tasks (``[darec]`` keys; a task is on when its weight is
not 0)."""


def slot_choices(architectures: tuple[str, ...], sizes: tuple[int, ...]) -> tuple[str, ...]:
    """Every slot spec of the allowed registered architectures (all when ``architectures`` is
    empty), in registry order, each sized one once per size."""
    unknown = [a for a in architectures if a not in ARCHITECTURES]
    if unknown:
        raise ConfigError(
            f"search.architectures names unknown adapter types {unknown}; registered: "
            f"{', '.join(ARCHITECTURES)}"
        )
    choices: list[str] = []
    for name, arch in ARCHITECTURES.items():
        if architectures and name not in architectures:
            continue
        choices += [f"{name}:{s}" for s in sorted(set(sizes))] if arch.sized else [name]
    return tuple(choices)


@dataclass(frozen=True)
class SearchSpace:
    """What a trial samples. Plain data: it is stored with the study (``to_json``), so a
    report or a resumed worker sees exactly the space the study was created with."""

    num_layers: int
    group_size: int
    choices: tuple[str, ...]
    """Slot specs a slot may take, as layout text (``none``, ``serial:16``, ``ia3``...)."""
    lr_range: tuple[float, float] | None = None
    """Log-uniform ``train.lr`` range, or None when the learning rate is not searched."""
    task_weights: tuple[str, ...] = ()
    """``[darec]`` weight keys searched (``align_weight``, ``hard_weight``)."""
    task_weight_range: tuple[float, float] = (0.01, 1.0)

    def __post_init__(self) -> None:
        if self.num_layers < 1 or self.group_size < 1:
            raise ConfigError(
                f"a search space needs num_layers and group_size >= 1, "
                f"got {self.num_layers}, {self.group_size}"
            )
        if not self.choices:
            raise ConfigError("the search space has no adapter choice; check search.architectures")

    @property
    def num_groups(self) -> int:
        return math.ceil(self.num_layers / self.group_size)

    def group_layers(self, group: int) -> range:
        """Decoder layers of ``group``."""
        start = group * self.group_size
        return range(start, min(start + self.group_size, self.num_layers))

    def param_name(self, group: int, slot: str) -> str:
        """Optuna parameter of one group's slot: ``layer03.attn`` or ``layers00-04.mlp``."""
        width = len(str(self.num_layers - 1))
        layers = self.group_layers(group)
        if len(layers) == 1:
            return f"layer{layers[0]:0{width}d}.{slot}"
        return f"layers{layers[0]:0{width}d}-{layers[-1]:0{width}d}.{slot}"

    def slot_params(self) -> list[tuple[int, str, str]]:
        """(group, slot, parameter name) of every layout parameter, bottom layer first."""
        return [(g, s, self.param_name(g, s)) for g in range(self.num_groups) for s in SLOTS]

    # ------------------------------------------------------------------ sampling

    def suggest(self, trial: optuna.Trial) -> dict[str, Any]:
        """Sample one point; returns the trial's parameters (also kept by the trial)."""
        for _, _, name in self.slot_params():
            trial.suggest_categorical(name, self.choices)
        if self.lr_range is not None:
            trial.suggest_float("lr", *self.lr_range, log=True)
        for key in self.task_weights:
            trial.suggest_float(key, *self.task_weight_range, log=True)
        return dict(trial.params)

    def layout(self, params: dict[str, Any]) -> AdapterLayout:
        """The per-layer layout of a point (each group's choice on each of its layers)."""
        layers: list[LayerAdapters] = []
        for g in range(self.num_groups):
            attn, mlp = (_spec(params[self.param_name(g, s)]) for s in SLOTS)
            layers += [LayerAdapters(attn, mlp)] * len(self.group_layers(g))
        return tuple(layers)

    def overrides(self, params: dict[str, Any]) -> list[str]:
        """``--set`` overrides that turn a base config into this point's config."""
        out = [f"darec.adapters={format_layout(self.layout(params))}"]
        if self.lr_range is not None:
            out.append(f"train.lr={params['lr']!r}")
        out += [f"darec.{key}={params[key]!r}" for key in self.task_weights]
        return out

    def apply(self, cfg: Config, params: dict[str, Any]) -> Config:
        """``cfg`` with this point's layout (and learning rate, task weights) set."""
        return apply_overrides(cfg, self.overrides(params))

    def params_for(self, layout_text: str, cfg: Config) -> dict[str, Any] | None:
        """Parameters that give ``layout_text`` (with ``cfg``'s lr and weights), or None when
        the space cannot express it (a choice not offered, or groups that would be split)."""
        layout = parse_layout(layout_text, self.num_layers)
        params: dict[str, Any] = {}
        for g, slot, name in self.slot_params():
            specs = {str(getattr(layout[i], slot)) for i in self.group_layers(g)}
            if len(specs) != 1 or (spec := specs.pop()) not in self.choices:
                return None
            params[name] = spec
        if self.lr_range is not None:
            if not self.lr_range[0] <= cfg.train.lr <= self.lr_range[1]:
                return None
            params["lr"] = cfg.train.lr
        lo, hi = self.task_weight_range
        for key in self.task_weights:
            value = getattr(cfg.darec, key)
            if not lo <= value <= hi:
                return None
            params[key] = value
        return params

    # ------------------------------------------------------------------ storage

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SearchSpace:
        lr = data.get("lr_range")
        return cls(
            num_layers=int(data["num_layers"]),
            group_size=int(data["group_size"]),
            choices=tuple(data["choices"]),
            lr_range=(float(lr[0]), float(lr[1])) if lr else None,
            task_weights=tuple(data.get("task_weights", ())),
            task_weight_range=tuple(data.get("task_weight_range", (0.01, 1.0))),  # type: ignore[arg-type]
        )


def _spec(text: str) -> SlotSpec:
    kind, _, size = text.partition(":")
    return SlotSpec(kind, int(size) if size else 0)


def build_space(cfg: Config, num_layers: int) -> SearchSpace:
    """The space of ``cfg.search`` for a backbone of ``num_layers`` decoder layers."""
    search: SearchConfig = cfg.search
    lr = search.lr_range
    tw = search.task_weight_range
    return SearchSpace(
        num_layers=num_layers,
        group_size=min(search.group_size, num_layers),
        choices=slot_choices(search.architectures, search.sizes),
        lr_range=(lr[0], lr[1]) if search.search_lr else None,
        task_weights=tuple(
            key
            for key in TASK_WEIGHTS
            if search.search_task_weights and getattr(cfg.darec, key) > 0
        ),
        task_weight_range=(tw[0], tw[1]),
    )


def known_layouts(space: SearchSpace) -> dict[str, str]:
    """The fixed designs every study starts from: DARec_base (``serial:16`` in every slot), and
    the same adapter only in the top half and the top quarter of the layer groups."""
    groups = space.num_groups
    out = {"DARec_base": BASE_SPEC}
    for name, top in (("top_half", math.ceil(groups / 2)), ("top_quarter", math.ceil(groups / 4))):
        if top >= groups:
            continue
        below = sum(len(space.group_layers(g)) for g in range(groups - top))
        layout = f"none*{below},{BASE_SPEC}*{space.num_layers - below}"
        if layout not in out.values():
            out[name] = layout
    return out
