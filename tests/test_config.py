from pathlib import Path

import pytest

from darec.config import (
    Config,
    TextConfig,
    apply_overrides,
    config_from_dict,
    config_from_run,
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
    _refused(
        tmp_path / "bad.toml", "[train]\nepochs = 'many'\n", r"bad.toml: train.epochs must be an"
    )
    _refused(tmp_path / "unknown.toml", "[train]\nepoch = 3\n", "valid keys here: epochs")


def _refused(path: Path, text: str, match: str) -> None:
    """A TOML file with ``text`` is refused with an error matching ``match``."""
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_validation_in_post_init():
    with pytest.raises(ConfigError, match="divisible"):
        apply_overrides(Config(), ["model.hidden_size=30", "model.num_heads=4"])
    with pytest.raises(ConfigError, match="select_metric"):
        apply_overrides(Config(), ["eval.select_metric=AUC"])


# ---------------------------------------------------------------- [text] and former keys

OLD_DAREC = {  # the [darec] keys of a run folder written before [text] and the folded switches
    "backbone": "some/llm",
    "backbone_layers": 8,
    "compute_dtype": "fp32",
    "item_fields": ["title", "genres"],
    "item_max_tokens": 24,
    "item_once": True,
    "cache_frozen": False,
    "align": False,
    "align_weight": 0.1,
    "hard": True,
    "hard_weight": 0.3,
}


def test_run_folder_with_former_keys_loads_into_text_and_weights():
    saved = config_to_dict(Config())
    del saved["text"]
    del saved["darec"]["reference_path"]
    saved["darec"] |= OLD_DAREC
    cfg = config_from_run(saved)
    assert cfg.text == TextConfig(
        fields=("title", "genres"),
        max_tokens=24,
        encoder="some/llm",
        encoder_layers=8,
        dtype="fp32",
    )
    assert cfg.darec.align_weight == 0.0  # align = false: the task was off
    assert cfg.darec.hard_weight == 0.3  # hard = true: its weight as it was
    assert cfg.darec.reference_path is True  # cache_frozen = false
    assert config_from_dict(config_to_dict(cfg)) == cfg  # saved again under the new keys
    on = {**saved, "darec": {**saved["darec"], "cache_frozen": True, "align": True}}
    assert config_from_run(on).darec.reference_path is False
    assert config_from_run(on).darec.align_weight == 0.1


def test_toml_file_with_former_keys_loads(tmp_path: Path):
    path = tmp_path / "old.toml"
    path.write_text(
        '[darec]\nbackbone_layers = 8\nitem_fields = ["title"]\nhard = false\n'
        "item_once = false\n[text]\nmax_tokens = 12\n"
    )
    cfg = load_config(path)
    assert (cfg.text.encoder_layers, cfg.text.fields, cfg.text.max_tokens) == (8, ("title",), 12)
    assert cfg.darec.hard_weight == 0.0 and cfg.darec.reference_path is True
    both = "[darec]\nitem_max_tokens = 8\n[text]\nmax_tokens = 12\n"
    _refused(tmp_path / "both.toml", both, r"both.toml: darec.item_max_tokens \(now text.max_to")
    bad = "[darec]\nalign = 'sometimes'\n"
    _refused(tmp_path / "bad.toml", bad, r"darec.align \(now darec.align_weight\) must be true")


def test_text_overrides_and_former_keys_on_the_command_line():
    cfg = apply_overrides(Config(), ["text.fields=title", "text.encoder_layers=4"])
    assert cfg.text.fields == ("title",) and cfg.text.encoder_layers == 4
    assert cfg.darec == Config().darec
    old = apply_overrides(Config(), ["darec.item_fields=title", "darec.backbone_layers=4"])
    assert old == cfg
    # a former switch set to false wins over its weight, in any order
    for sets in (
        ["darec.align=false", "darec.align_weight=0.5"],
        ["darec.align_weight=0.5", "darec.align=false"],
    ):
        assert apply_overrides(Config(), sets).darec.align_weight == 0.0
    kept = apply_overrides(Config(), ["darec.hard=true", "darec.hard_weight=0.5"])
    assert kept.darec.hard_weight == 0.5
    assert apply_overrides(Config(), ["darec.cache_frozen=false"]).darec.reference_path is True
    with pytest.raises(ConfigError, match="text.max_tokens must be >= 1"):
        apply_overrides(Config(), ["darec.item_max_tokens=0"])
    with pytest.raises(ConfigError, match="text.pooling must be one of 'mean'"):
        apply_overrides(Config(), ["text.pooling=max"])
    with pytest.raises(ConfigError, match="valid keys"):
        apply_overrides(Config(), ["darec.fields=title"])


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_non_finite_numbers_are_refused(raw: str):
    with pytest.raises(
        ConfigError, match=rf"train.lr must be a number \(not nan or infinite\), got '{raw}'"
    ):
        apply_overrides(Config(), [f"train.lr={raw}"])


def test_non_finite_number_in_a_toml_file_is_refused(tmp_path: Path):
    path = tmp_path / "run.toml"
    path.write_text("[train]\nlr = nan\n")
    with pytest.raises(ConfigError, match=r"run.toml: train.lr must be a number \(not nan"):
        load_config(path)


def test_toml_file_that_is_not_utf8_is_refused_clearly(tmp_path: Path):
    path = tmp_path / "latin1.toml"
    path.write_bytes('[data]\npath = "caf\u00e9"\n'.encode("latin-1"))
    with pytest.raises(
        ConfigError, match=r"latin1.toml: expected a UTF-8 TOML file; the byte at offset 18 is"
    ):
        load_config(path)
