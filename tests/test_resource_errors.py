"""Sizes that do not fit in memory and cache folders that cannot be written get clear errors."""

from __future__ import annotations

import pytest

from darec.config import Config, apply_overrides
from darec.errors import ConfigError
from darec.models.base import ModelContext
from darec.models.registry import build_model
from darec.paths import cache_dir


def test_a_model_too_large_for_memory_names_its_sizes() -> None:
    # 10 items x 10**12 floats cannot be allocated on any test machine
    cfg = apply_overrides(Config(), ["model.name=sasrec", "model.hidden_size=1000000000000"])
    with pytest.raises(ConfigError, match=r"model.hidden_size=1000000000000.*choose smaller"):
        build_model(cfg, ModelContext(num_items=10))


def test_other_runtime_errors_are_not_disguised(monkeypatch: pytest.MonkeyPatch) -> None:
    from darec.models import registry

    def broken(cfg: Config, ctx: ModelContext) -> None:
        raise RuntimeError("a bug, not memory")

    monkeypatch.setattr(registry.MODELS["sasrec"], "from_config", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        build_model(apply_overrides(Config(), ["model.name=sasrec"]), ModelContext(num_items=10))


@pytest.mark.parametrize("via_env", [False, True])
def test_an_unwritable_cache_folder_is_named(
    monkeypatch: pytest.MonkeyPatch, via_env: bool
) -> None:
    target = "/proc/darec-cache-here-is-not-writable"
    if via_env:
        monkeypatch.setenv("DAREC_CACHE_DIR", target)
    with pytest.raises(ConfigError, match=r"cache folder /proc/darec-cache.*DAREC_CACHE_DIR"):
        cache_dir("" if via_env else target)
