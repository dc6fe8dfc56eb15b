"""Private hash lists: importer plug-ins by format name, and the transactional store."""

from node.lists import csv_formats as _csv  # noqa: F401  (registers csv, hma, icse)
from node.lists import exchanges as _exchanges  # noqa: F401  (registers stopncii, tcap)
from node.lists import libra_hash as _libra_hash  # noqa: F401  (registers libra-hash, issue 18)
from node.lists import ncmec as _ncmec  # noqa: F401
from node.lists import plain as _plain  # noqa: F401
from node.lists import vics as _vics  # noqa: F401
from node.lists import vpdq_file as _vpdq_file  # noqa: F401  (registers vpdq, issue 13)
from node.lists.base import (
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
    VideoFamily,
    formats,
    get_importer,
    register,
)
from node.lists.store import (
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
    "VideoFamily",
    "entry_count",
    "formats",
    "get_importer",
    "import_list",
    "import_records",
    "list_versions",
    "register",
    "remove_version",
]
