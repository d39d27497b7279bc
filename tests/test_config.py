from pathlib import Path

import pytest

from darec.config import (
    Config,
    apply_overrides,
    config_from_dict,
    config_to_dict,
    load_config,
)
from darec.errors import ConfigError


def test_defaults_round_trip_through_dict():
    cfg = Config()
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_override_types_are_converted_and_checked():
    cfg = apply_overrides(
        Config(), ["train.lr=0.01", "train.epochs=3", "eval.ks=1,5", "eval.exclude_history=false"]
    )
    assert cfg.train.lr == 0.01 and cfg.train.epochs == 3
    assert cfg.eval.ks == (1, 5) and cfg.eval.exclude_history is False
    with pytest.raises(ConfigError, match="train.epochs must be an integer"):
        apply_overrides(Config(), ["train.epochs=three"])
    with pytest.raises(ConfigError, match="model.loss must be one of 'ce', 'bpr'"):
        apply_overrides(Config(), ["model.loss=hinge"])


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as exc:
        apply_overrides(Config(), ["train.learning_rate=0.1"])
    assert "train.learning_rate" in str(exc.value) and "train.lr" in str(exc.value)
    with pytest.raises(ConfigError, match="valid keys"):
        apply_overrides(Config(), ["nosuch.key=1"])
    with pytest.raises(ConfigError, match="section.key=value"):
        apply_overrides(Config(), ["train.lr"])


def test_toml_loading_validates(tmp_path: Path):
    good = tmp_path / "good.toml"
    good.write_text('[model]\nname = "gru4rec"\nhidden_size = 32\n[train]\nlr = 0.002\n')
    cfg = load_config(good, ["train.seed=7"])
    assert (cfg.model.name, cfg.model.hidden_size, cfg.train.lr, cfg.train.seed) == (
        "gru4rec",
        32,
        0.002,
        7,
    )
    bad = tmp_path / "bad.toml"
    bad.write_text("[train]\nepochs = 'many'\n")
    with pytest.raises(ConfigError, match=r"bad.toml: train.epochs must be an integer"):
        load_config(bad)
    unknown = tmp_path / "unknown.toml"
    unknown.write_text("[train]\nepoch = 3\n")
    with pytest.raises(ConfigError, match="valid keys here: epochs"):
        load_config(unknown)


def test_validation_in_post_init():
    with pytest.raises(ConfigError, match="divisible"):
        apply_overrides(Config(), ["model.hidden_size=30", "model.num_heads=4"])
    with pytest.raises(ConfigError, match="select_metric"):
        apply_overrides(Config(), ["eval.select_metric=AUC"])
