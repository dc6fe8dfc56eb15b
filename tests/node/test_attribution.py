from __future__ import annotations

from pathlib import Path

import pytest

from node.attribution.attributor import Attribution, Attributor, GeoDatabaseError
from protocol.models import UNKNOWN_ASN, UNKNOWN_COUNTRY, UNKNOWN_HOSTER
from tests.node.conftest import write_geoip


def test_known_loopback_addresses(tmp_path: Path) -> None:
    country_db, asn_db = write_geoip(tmp_path)
    with Attributor(country_db, asn_db) as attributor:
        assert attributor.lookup("127.0.1.7") == Attribution("DE", 64500, "Hoster A")
        assert attributor.lookup("127.0.2.200") == Attribution("NL", 64501, "Hoster B")


@pytest.mark.parametrize("ip", ["127.0.3.1", "::1", None, "", "not-an-ip"])
def test_unknown_addresses_are_zz_0_unknown(tmp_path: Path, ip: str | None) -> None:
    country_db, asn_db = write_geoip(tmp_path)
    with Attributor(country_db, asn_db) as attributor:
        result = attributor.lookup(ip)
    assert result == Attribution(UNKNOWN_COUNTRY, UNKNOWN_ASN, UNKNOWN_HOSTER)
    assert (result.country, result.asn, result.hoster) == ("ZZ", 0, "unknown")


def test_no_databases_configured_means_unknown() -> None:
    with Attributor() as attributor:
        assert attributor.lookup("127.0.1.7") == Attribution()


def test_one_database_only(tmp_path: Path) -> None:
    country_db, _ = write_geoip(tmp_path)
    with Attributor(country_db=country_db) as attributor:
        assert attributor.lookup("127.0.1.7") == Attribution("DE", 0, "unknown")


def test_configured_but_missing_database_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(GeoDatabaseError, match="country"):
        Attributor(country_db=tmp_path / "missing.mmdb")
    garbage = tmp_path / "garbage.mmdb"
    garbage.write_bytes(b"not a maxmind database")
    with pytest.raises(GeoDatabaseError, match="ASN"):
        Attributor(asn_db=garbage)
