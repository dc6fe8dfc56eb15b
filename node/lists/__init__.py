"""Private hash lists: importer plug-ins by format name, and the transactional store."""

from . import csv_formats as _csv  # noqa: F401  (registers csv, hma, icse)
from . import ncmec as _ncmec  # noqa: F401
from . import plain as _plain  # noqa: F401
from . import vics as _vics  # noqa: F401
from .base import (
    ImportedRecord,
    ImporterFactory,
    ListFamily,
    ListFormatError,
    ListImporter,
    RejectedRecord,
    StoredFamily,
    UnknownFormat,
    formats,
    get_importer,
    register,
)
from .store import (
    ImportSummary,
    ListNotFound,
    RemoveSummary,
    entry_count,
    import_list,
    import_records,
    list_versions,
    remove_version,
)

__all__ = [
    "ImportSummary",
    "ImportedRecord",
    "ImporterFactory",
    "ListFamily",
    "ListFormatError",
    "ListImporter",
    "ListNotFound",
    "RejectedRecord",
    "RemoveSummary",
    "StoredFamily",
    "UnknownFormat",
    "entry_count",
    "formats",
    "get_importer",
    "import_list",
    "import_records",
    "list_versions",
    "register",
    "remove_version",
]
