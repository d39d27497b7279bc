from pathlib import Path

from darec.config import (
    Config,
    DarecConfig,
    DataConfig,
    EvalConfig,
    ModelConfig,
    TextConfig,
    TrainConfig,
    load_config,
)
from darec.config_docs import default_toml, field_help, reference_markdown

ROOT = Path(__file__).resolve().parents[1]


def test_configuration_reference_is_up_to_date():
    expected = reference_markdown()
    actual = (ROOT / "docs" / "configuration.md").read_text()
    assert actual == expected, "run: darec config reference > docs/configuration.md"


def test_every_config_key_has_help():
    for cls in (DataConfig, ModelConfig, TextConfig, TrainConfig, EvalConfig, DarecConfig):
        missing = [k for k, v in field_help(cls).items() if not v]
        assert not missing, f"{cls.__name__} fields without a docstring: {missing}"


def test_default_toml_loads_back(tmp_path):
    path = tmp_path / "defaults.toml"
    path.write_text(default_toml())
    assert load_config(path) == Config()
