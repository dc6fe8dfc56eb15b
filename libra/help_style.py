"""How `libra ... --help` names values (TEXT, INTEGER, PATH, FILES..., nothing for flags) and
wraps its prose.

Typer 0.29 prints Python type names (`--help <bool>`, `<list[Path]>`, usage `{files}...`), which
mean nothing to an operator and clutter every screen. Typer builds its parameter objects itself
(no class can be passed in), so the house style replaces the two display methods on its
parameter classes, once, before any help is printed. tests/test_cli_help.py checks every command's
help for Python type names, so a Typer upgrade that changes these methods fails loudly.

Prose: in Rich markup mode Typer keeps every line break of a docstring after its first paragraph,
and our docstrings are wrapped at 100 columns, so on an 80-column terminal each line was wrapped
again and left a stub ("day), plus any" / "earlier period ..."). Paragraphs are reflowed here and
Rich wraps them to the terminal; a list item, an indented line and a paragraph marked with
click's "\b" keep their own lines.
"""

from __future__ import annotations

import re
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
# A line that starts a line of its own: a list item ("- x", "* x", "1. x") or indented text.
_OWN_LINE = re.compile(r"\s|[-*\u2022] |\d+[.)] ")


def reflow(paragraph: str) -> str:
    """One paragraph of help prose with its docstring line breaks joined (see above)."""
    if paragraph.startswith("\b"):
        return paragraph
    lines: list[str] = []
    for line in paragraph.split("\n"):
        own = bool(_OWN_LINE.match(line))
        if lines and line.strip() and not own and not lines[-1][:1].isspace():
            lines[-1] = lines[-1].rstrip() + " " + line.strip()
        else:
            lines.append(line)
    return "\n".join(lines)


def _fix_linebreaks(paragraphs: list[str], markup_mode: Any) -> str:
    return "\n\n".join(reflow(p) for p in paragraphs)


def _reflowing(format_help: Any) -> Any:
    """``format_help`` that first installs the reflow: typer.rich_utils costs ~0.1 s to import,
    so it is patched only when a help screen is drawn, not for every command's start-up."""

    def wrapped(self: Any, ctx: Any, formatter: Any) -> Any:
        from typer import rich_utils

        rich_utils._fix_linebreaks = _fix_linebreaks
        return format_help(self, ctx, formatter)

    return wrapped


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
    core.TyperCommand.format_help = _reflowing(core.TyperCommand.format_help)  # type: ignore[method-assign]
    core.TyperGroup.format_help = _reflowing(core.TyperGroup.format_help)  # type: ignore[method-assign]
    _applied = True
