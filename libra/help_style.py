"""How `libra ... --help` names values: TEXT, INTEGER, PATH, FILES..., nothing for flags.

Typer 0.29 prints Python type names (`--help <bool>`, `<list[Path]>`, usage `{files}...`), which
mean nothing to an operator and clutter every screen. Typer builds its parameter objects itself
(no class can be passed in), so the house style replaces the two display methods on its
parameter classes, once, before any help is printed. tests/test_cli_help.py checks every command's
help for Python type names, so a Typer upgrade that changes these methods fails loudly.
"""

from __future__ import annotations

from typing import Any

from typer import core

_NAMES = {
    "str": "TEXT",
    "int": "INTEGER",
    "float": "NUMBER",
    "bool": "BOOLEAN",
    "datetime": "TIMESTAMP",
    "path": "PATH",
    "file": "FILE",
    "dir": "DIRECTORY",
    "directory": "DIRECTORY",
    "UUID": "UUID",
}

_applied = False


def _label(param: Any, ctx: Any) -> str:
    """The operator's name for a parameter's value, from Typer's own `<type>` label."""
    desc = param.type_descriptor
    if desc.is_choice and param.show_choices:
        # Typer's label is "a|b|c" inside <>: keep the choices, drop the brackets.
        return "[" + str(core.TyperOption.display_type(param, ctx)).strip("<>") + "]"
    if desc.is_datetime:
        return "TIMESTAMP"
    if desc.is_path:
        return _NAMES.get(str(desc.path_type), "PATH")
    bare = param.bare_type()
    if bare.startswith("list[") and bare.endswith("]"):
        bare = bare[5:-1]
    return _NAMES.get(bare, str(bare).upper())


def _option_type(self: Any, ctx: Any) -> str | None:
    if self.metavar is not None:
        return str(self.metavar)
    if self.is_flag or self.count:
        return None  # a flag takes no value, so it shows none
    label = _label(self, ctx)
    return f"{label}..." if self.nargs != 1 else label


def _argument_name(self: Any) -> str:
    name = str(self.metavar if self.metavar is not None else self.name).upper()
    return f"{name}..." if self.nargs != 1 else name


def _argument_usage(self: Any) -> str:
    name = _argument_name(self)
    return name if self.required else f"[{name}]"


def _argument_type(self: Any, ctx: Any) -> str | None:
    if self.metavar is not None:
        return None  # the name column shows the metavar already
    return _label(self, ctx)


def apply() -> None:
    """Install the house style (idempotent)."""
    global _applied
    if _applied:
        return
    core.TyperOption.display_type_rich = _option_type  # type: ignore[method-assign]
    core.TyperArgument._rich_display_name = _argument_name  # type: ignore[method-assign]
    core.TyperArgument._usage_display_name = _argument_usage  # type: ignore[method-assign]
    core.TyperArgument.display_type_rich = _argument_type  # type: ignore[method-assign]
    _applied = True
