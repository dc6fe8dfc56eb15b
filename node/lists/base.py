"""The list-importer interface and its plug-in registry (one importer per file format).

An importer turns a text stream into records: each line either becomes an ImportedRecord
(normalised hash of a known family) or a RejectedRecord with its line number and the reason.
Importers do not touch the database; node.lists.store does, in one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol, TextIO

from protocol.hashes import HashFamily


@dataclass(frozen=True)
class ImportedRecord:
    family: HashFamily
    value: str  # normalised lowercase hex
    line: int
    label: str | None = None
    category: str | None = None


@dataclass(frozen=True)
class RejectedRecord:
    line: int
    text: str
    reason: str


class ListImporter(Protocol):
    @property
    def name(self) -> str:
        """The format name the importer is registered under."""
        ...

    def records(self, stream: TextIO) -> Iterator[ImportedRecord | RejectedRecord]: ...


# A factory gets the family forced on the command line (--algorithm), or None.
ImporterFactory = Callable[[HashFamily | None], ListImporter]


class UnknownFormat(KeyError):
    """No importer is registered under that format name."""


_REGISTRY: dict[str, ImporterFactory] = {}


def register(name: str, factory: ImporterFactory) -> None:
    if name in _REGISTRY:
        raise ValueError(f"list format {name!r} is already registered")
    _REGISTRY[name] = factory


def get_importer(name: str, algorithm: HashFamily | None = None) -> ListImporter:
    try:
        factory = _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "none"
        raise UnknownFormat(f"unknown list format {name!r} (known: {known})") from None
    return factory(algorithm)


def formats() -> list[str]:
    return sorted(_REGISTRY)
