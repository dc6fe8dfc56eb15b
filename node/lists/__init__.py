"""Private hash lists: importer plug-ins by format name, and the transactional store."""

from . import plain as _plain  # noqa: F401  (registers the "plain" format)
from .base import (
    ImportedRecord,
    ImporterFactory,
    ListImporter,
    RejectedRecord,
    UnknownFormat,
    formats,
    get_importer,
    register,
)
from .store import ImportSummary, entry_count, import_list, import_records

__all__ = [
    "ImportSummary",
    "ImportedRecord",
    "ImporterFactory",
    "ListImporter",
    "RejectedRecord",
    "UnknownFormat",
    "entry_count",
    "formats",
    "get_importer",
    "import_list",
    "import_records",
    "register",
]
