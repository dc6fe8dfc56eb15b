"""The lab GeoIP databases, read back with maxminddb."""

from __future__ import annotations

from pathlib import Path

import maxminddb
import pytest

from libra.demo.labgeo import ASN_FILE, COUNTRY_FILE, LabGeoError, write_lab_geoip
from libra.demo.world import COUNTRY_NAMES, Hoster, World


@pytest.fixture(scope="module")
def databases(small_world: World, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write_lab_geoip(small_world, tmp_path_factory.mktemp("geoip") / "lab")


def test_files_and_metadata(databases: tuple[Path, Path]) -> None:
    country, asn = databases
    assert country.name == COUNTRY_FILE and asn.name == ASN_FILE
    with maxminddb.open_database(str(country)) as reader:
        assert reader.metadata().database_type == "GeoLite2-Country"
        assert reader.metadata().ip_version == 6
    with maxminddb.open_database(str(asn)) as reader:
        assert reader.metadata().database_type == "GeoLite2-ASN"


def test_every_known_hoster_resolves(small_world: World, databases: tuple[Path, Path]) -> None:
    country, asn = databases
    with maxminddb.open_database(str(country)) as c, maxminddb.open_database(str(asn)) as a:
        for hoster in small_world.hosters:
            if not hoster.in_geoip:
                continue
            assert c.get(hoster.ip) == {
                "country": {
                    "iso_code": hoster.country,
                    "names": {"en": COUNTRY_NAMES[hoster.country]},
                }
            }
            assert a.get(hoster.ip) == {
                "autonomous_system_number": hoster.asn,
                "autonomous_system_organization": hoster.name,
            }


def test_unknown_hoster_and_other_addresses_miss(
    small_world: World, databases: tuple[Path, Path]
) -> None:
    unknown = [h for h in small_world.hosters if not h.in_geoip]
    assert unknown
    for path in databases:
        with maxminddb.open_database(str(path)) as reader:
            for ip in [h.ip for h in unknown] + ["127.0.0.1", "127.0.1.8", "127.0.2.1", "::1"]:
                assert reader.get(ip) is None


def test_exactly_one_address_per_hoster(small_world: World, databases: tuple[Path, Path]) -> None:
    # /32 networks: the neighbours of a hoster's IP are not that hoster.
    _, asn = databases
    with maxminddb.open_database(str(asn)) as reader:
        record, prefix = reader.get_with_prefix_len("127.0.1.1")
        assert record is not None and prefix == 32
        assert reader.get("127.0.1.0") is None


def test_unnamed_country_is_refused(small_world: World, tmp_path: Path) -> None:
    odd = Hoster("hoster-q", "Q", "127.0.1.9", "QQ", 64599)
    world = World(
        hosters=[*small_world.hosters, odd],
        sites=small_world.sites,
        pages=small_world.pages,
        placements=small_world.placements,
        nodes=small_world.nodes,
        images=small_world.images,
        known=small_world.known,
        redirects=small_world.redirects,
    )
    with pytest.raises(LabGeoError, match="QQ"):
        write_lab_geoip(world, tmp_path)
