"""Lab GeoIP: MaxMind-format country and ASN databases for the synthetic hosters.

Records have the GeoLite2 shapes the node's attribution reads, so the node runs the same code in
the lab as with real databases. Each known hoster's IP is a /32; the hoster that is deliberately
not in the GeoIP (`Hoster.in_geoip` false) is left out, so that its lookups miss and the node
attributes it as unknown.

The trees are IPv6 with IPv4 mapped in (`ipv4_compatible`), like MaxMind's own databases, so
that IPv4 and IPv6 lookups both work against them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

from mmdb_writer import MMDBWriter
from netaddr import IPSet

from libra.demo.world import COUNTRY_NAMES, World

COUNTRY_FILE: Final = "lab-country.mmdb"
ASN_FILE: Final = "lab-asn.mmdb"


class LabGeoError(ValueError):
    """A hoster in the world cannot be written to the lab GeoIP."""


def _writer(database_type: str, description: str) -> MMDBWriter:
    return MMDBWriter(
        ip_version=6,
        ipv4_compatible=True,
        database_type=database_type,
        languages=["en"],
        description={"en": description},
    )


def write_lab_geoip(world: World, directory: Path) -> tuple[Path, Path]:
    """Write `lab-country.mmdb` and `lab-asn.mmdb` into `directory`; returns (country, asn)."""
    directory.mkdir(parents=True, exist_ok=True)
    country_db = _writer("GeoLite2-Country", "LIBRA lab country database (synthetic)")
    asn_db = _writer("GeoLite2-ASN", "LIBRA lab ASN database (synthetic)")
    for hoster in world.hosters:
        if not hoster.in_geoip:
            continue
        name = COUNTRY_NAMES.get(hoster.country)
        if name is None:
            raise LabGeoError(f"no country name for {hoster.country} ({hoster.key})")
        network = IPSet([f"{hoster.ip}/32"])
        country_db.insert_network(
            network, {"country": {"iso_code": hoster.country, "names": {"en": name}}}
        )
        asn_db.insert_network(
            network,
            {
                "autonomous_system_number": hoster.asn,
                "autonomous_system_organization": hoster.name,
            },
        )
    country_path = directory / COUNTRY_FILE
    asn_path = directory / ASN_FILE
    country_db.to_db_file(str(country_path))
    asn_db.to_db_file(str(asn_path))
    return country_path, asn_path
