"""The names `libra node ... --help` lists without importing their modules (issue 17: help at
once) equal the registries they stand for."""

from __future__ import annotations

from node.cli.contacts import RETENTION_RULES
from node.cli.lists import EXPORT_FORMATS, LIST_FORMATS
from node.cli.notices import NOTICE_STATES
from node.lists import export as list_export
from node.lists import formats
from node.notices.models import STATES
from node.retention import RULES


def test_help_names_equal_their_registries() -> None:
    assert tuple(RULES) == RETENTION_RULES
    assert tuple(formats()) == LIST_FORMATS
    assert list_export.EXPORT_FORMATS == EXPORT_FORMATS
    assert STATES == NOTICE_STATES
