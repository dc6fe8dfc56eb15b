"""Private hash lists: importer plug-ins by format name, and the transactional store."""

from . import csv_formats as _csv  # noqa: F401  (registers csv, hma, icse)
from . import exchanges as _exchanges  # noqa: F401  (registers stopncii, tcap)
from . import libra_hash as _libra_hash  # noqa: F401  (registers libra-hash, issue 18)
from . import ncmec as _ncmec  # noqa: F401
from . import plain as _plain  # noqa: F401
from . import vics as _vics  # noqa: F401
from .base import (
    DeletedRecord,
    ImportedRecord,
    ImporterFactory,
    ListFamily,
    ListFormatError,
    ListImporter,
    Media,
    Record,
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
    NothingToImport,
    RemoveSummary,
    entry_count,
    import_list,
    import_records,
    list_versions,
    remove_version,
)

__all__ = [
    "DeletedRecord",
    "ImportSummary",
    "ImportedRecord",
    "ImporterFactory",
    "ListFamily",
    "ListFormatError",
    "ListImporter",
    "ListNotFound",
    "Media",
    "NothingToImport",
    "Record",
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
