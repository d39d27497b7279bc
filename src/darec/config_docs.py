"""The configuration reference (docs/configuration.md), generated from config.py itself.

Field help is the string literal written under each dataclass field; reading it from the source
keeps the reference and the code from drifting apart (a test compares the two).
"""

from __future__ import annotations

import ast
import dataclasses
import inspect
import typing

from darec import config as config_module
from darec.config import Config, former_keys

__all__ = ["field_help", "reference_markdown", "default_toml"]


def field_help(cls: type) -> dict[str, str]:
    """Docstring under each field of dataclass ``cls`` (empty where there is none)."""
    tree = ast.parse(inspect.getsource(cls))
    body = tree.body[0].body  # type: ignore[attr-defined]
    out: dict[str, str] = {}
    for node, nxt in zip(body, [*body[1:], None], strict=True):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            doc = ""
            if isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                doc = " ".join(str(nxt.value.value).split())
            out[node.target.id] = doc
    return out


def _type_name(tp: typing.Any) -> str:
    if typing.get_origin(tp) is typing.Literal:
        return " \\| ".join(f'"{a}"' for a in typing.get_args(tp))
    if typing.get_origin(tp) is tuple:
        inner = typing.get_args(tp)[0]
        if typing.get_origin(inner) is typing.Literal:
            return f"list of ({_type_name(inner)})"
        return f"list of {inner.__name__}"
    return getattr(tp, "__name__", str(tp))


def _toml_value(value: typing.Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, tuple):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return repr(value)


def reference_markdown() -> str:
    """Markdown tables of every key: type, default and help."""
    cfg = Config()
    lines = [
        "# Configuration reference",
        "",
        "Generated from `src/darec/config.py` by `darec config reference` (a test keeps this file",
        "in sync). Set keys in a TOML file (`--config run.toml`, one table per section) or on the",
        "command line (`--set section.key=value`, repeatable). Values are type-checked; an",
        "unknown key is an error that lists the valid ones.",
        "",
    ]
    top_help = field_help(Config)
    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        if not dataclasses.is_dataclass(value):
            continue
        cls: type = type(value)
        lines += [f"## `[{f.name}]`", "", (cls.__doc__ or "").strip(), ""]
        lines += ["| key | type | default | meaning |", "|---|---|---|---|"]
        hints = typing.get_type_hints(cls, vars(config_module))
        helps = field_help(cls)
        for sub in dataclasses.fields(cls):
            lines.append(
                f"| `{f.name}.{sub.name}` | {_type_name(hints[sub.name])} | "
                f"`{_toml_value(getattr(value, sub.name))}` | {helps.get(sub.name, '')} |"
            )
        lines.append("")
    lines += ["## Top level", "", "| key | type | default | meaning |", "|---|---|---|---|"]
    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        if not dataclasses.is_dataclass(value):
            lines.append(
                f"| `{f.name}` | {type(value).__name__} | `{_toml_value(value)}` | "
                f"{top_help.get(f.name, '')} |"
            )
    lines += [
        "",
        "## Former keys",
        "",
        "Run folders, studies, TOML files and `--set` written with these keys still load:",
        "",
        "| former key | read as |",
        "|---|---|",
    ]
    for old, (new, off) in former_keys().items():
        meaning = f"`{new}`"
        if off is not None:
            meaning += f"; `{old} = false` sets `{new} = {_toml_value(off)}`, true changes nothing"
        lines.append(f"| `{old}` | {meaning} |")
    return "\n".join(lines) + "\n"


def default_toml() -> str:
    """The default configuration as a TOML file a user can edit."""
    cfg = Config()
    lines: list[str] = []
    for f in dataclasses.fields(Config):
        value = getattr(cfg, f.name)
        if not dataclasses.is_dataclass(value):
            lines.insert(0, f"{f.name} = {_toml_value(value)}")
            continue
        lines += ["", f"[{f.name}]"]
        lines += [
            f"{sub.name} = {_toml_value(getattr(value, sub.name))}"
            for sub in dataclasses.fields(value)
        ]
    return "\n".join(lines).strip() + "\n"
