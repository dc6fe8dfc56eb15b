"""Rebuild the dashboard's vendored assets from pinned npm packages (run once per upgrade).

    python coordinator/dashboard/tools/build_assets.py

Needs ``npm`` (only ``npm pack``: no install scripts run). Writes into ../static/vendor/:

- echarts.min.js + LICENSE/NOTICE files (Apache ECharts, Apache-2.0);
- world.geo.json: world-atlas's countries-110m TopoJSON decoded to GeoJSON once, each feature
  carrying ``properties.iso`` (ISO 3166-1 alpha-2, from i18n-iso-countries' numeric table) and
  ``properties.name``; coordinates rounded to 0.001 degrees;
- VERSIONS.json: the package versions and their npm integrity strings.

The dashboard then loads nothing from outside the coordinator: agencies run it air-gapped.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

# Bump these together, rerun, review the diff of static/vendor/ and the dashboard tests.
PACKAGES = {
    "echarts": "6.1.0",
    "world-atlas": "2.0.2",
    "i18n-iso-countries": "7.14.0",
}

# Territories world-atlas draws without a numeric ISO code. IP geolocation attributes their
# addresses to these codes, so the shapes are shaded with them (XK: the code registries use).
NO_ID_FEATURES = {"Kosovo": "XK", "N. Cyprus": "CY", "Somaliland": "SO"}
PRECISION = 3

VENDOR = Path(__file__).resolve().parent.parent / "static" / "vendor"


def npm_pack(name: str, version: str, workdir: Path) -> tuple[Path, str]:
    """Fetch ``name@version`` as a tarball (no scripts run) and unpack it; returns its root."""
    out = subprocess.run(
        ["npm", "pack", "--json", "--ignore-scripts", f"{name}@{version}"],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    )
    info = json.loads(out.stdout)[0]
    target = workdir / name
    with tarfile.open(workdir / info["filename"]) as tar:
        tar.extractall(target, filter="data")
    return target / "package", str(info["integrity"])


def decode_topology(topology: dict[str, Any], name: str) -> list[dict[str, Any]]:
    """TopoJSON object -> GeoJSON features (spec: github topojson-specification, 2.1-2.2).

    Arcs are delta-encoded integers under ``transform``; a negative arc index ~i means arc i
    reversed. Each arc's first point repeats the previous arc's last, so it is dropped.
    """
    scale = topology["transform"]["scale"]
    translate = topology["transform"]["translate"]
    arcs: list[list[tuple[float, float]]] = []
    for arc in topology["arcs"]:
        x = y = 0
        points = []
        for dx, dy in arc:
            x, y = x + dx, y + dy
            points.append((x * scale[0] + translate[0], y * scale[1] + translate[1]))
        arcs.append(points)

    def ring(indexes: list[int]) -> list[list[float]]:
        points: list[tuple[float, float]] = []
        for i in indexes:
            arc = arcs[i] if i >= 0 else arcs[~i][::-1]
            points.extend(arc if not points else arc[1:])
        return [[round(px, PRECISION), round(py, PRECISION)] for px, py in points]

    features = []
    for geometry in topology["objects"][name]["geometries"]:
        kind = geometry["type"]
        if kind == "Polygon":
            polygons = [[ring(r) for r in geometry["arcs"]]]
        elif kind == "MultiPolygon":
            polygons = [[ring(r) for r in polygon] for polygon in geometry["arcs"]]
        else:
            raise SystemExit(f"unexpected geometry type {kind}")
        features.append(
            {"id": geometry.get("id"), "name": geometry["properties"]["name"], "polygons": polygons}
        )
    return features


def _clip(ring: list[list[float]], keep_west_of: float, west: bool) -> list[list[float]]:
    """Sutherland-Hodgman against one vertical line: the part west (or east) of it."""

    def inside(p: list[float]) -> bool:
        return p[0] <= keep_west_of if west else p[0] >= keep_west_of

    out: list[list[float]] = []
    for i, current in enumerate(ring):
        previous = ring[i - 1]
        if inside(current) != inside(previous):
            t = (keep_west_of - previous[0]) / (current[0] - previous[0])
            out.append([keep_west_of, previous[1] + t * (current[1] - previous[1])])
        if inside(current):
            out.append(current)
    if out and out[0] != out[-1]:
        out.append(out[0])
    return out


def split_antimeridian(polygon: list[list[list[float]]]) -> list[list[list[list[float]]]]:
    """A flat map cannot draw a ring that crosses 180 degrees (Fiji, Chukotka): it would
    streak across the whole map. Such a ring is cut into its eastern and western parts.
    Rings that wind around a pole (Antarctica) or never cross are kept as they are."""
    outer = polygon[0]
    if all(abs(b[0] - a[0]) <= 180 for a, b in itertools.pairwise(outer)):
        return [polygon]
    unwrapped = [list(outer[0])]
    for point in outer[1:]:
        x = point[0]
        while x - unwrapped[-1][0] > 180:
            x -= 360
        while x - unwrapped[-1][0] < -180:
            x += 360
        unwrapped.append([x, point[1]])
    if abs(unwrapped[-1][0] - unwrapped[0][0]) > 1e-9:
        return [polygon]  # winds around a pole
    if min(p[0] for p in unwrapped) < -180:
        unwrapped = [[x + 360, y] for x, y in unwrapped]
    east = _clip(unwrapped, 180.0, west=True)
    west = [[x - 360, y] for x, y in _clip(unwrapped, 180.0, west=False)]
    # Holes are dropped for a cut ring (none of the 110m crossing shapes has one).
    return [
        [[[round(x, PRECISION), round(y, PRECISION)] for x, y in part]]
        for part in (east, west)
        if len(part) > 3
    ]


def world_geojson(atlas: Path, countries: Path) -> dict[str, Any]:
    numeric = {row[2]: row[0] for row in json.loads((countries / "codes.json").read_text())}
    topology = json.loads((atlas / "countries-110m.json").read_text())
    by_iso: dict[str, dict[str, Any]] = {}
    for feature in decode_topology(topology, "countries"):
        if feature["id"] is not None:
            iso = numeric.get(feature["id"])
            if iso is None:
                raise SystemExit(f"no alpha-2 code for numeric {feature['id']} ({feature['name']})")
        else:
            iso = NO_ID_FEATURES.get(feature["name"])
            if iso is None:
                raise SystemExit(f"feature {feature['name']!r} has no id and no mapping")
        entry = by_iso.setdefault(iso, {"name": None, "polygons": []})
        if feature["id"] is not None or entry["name"] is None:
            entry["name"] = feature["name"]
        for polygon in feature["polygons"]:
            entry["polygons"].extend(split_antimeridian(polygon))
    return {
        "type": "FeatureCollection",
        "features": [
            {
                "type": "Feature",
                "properties": {"iso": iso, "name": entry["name"]},
                "geometry": {"type": "MultiPolygon", "coordinates": entry["polygons"]},
            }
            for iso, entry in sorted(by_iso.items())
        ],
    }


def main() -> None:
    if shutil.which("npm") is None:
        raise SystemExit("npm is needed to fetch the pinned packages")
    VENDOR.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        roots, integrity = {}, {}
        for name, version in PACKAGES.items():
            roots[name], integrity[name] = npm_pack(name, version, work)
        echarts = roots["echarts"]
        shutil.copyfile(echarts / "dist" / "echarts.min.js", VENDOR / "echarts.min.js")
        shutil.copyfile(echarts / "LICENSE", VENDOR / "LICENSE-echarts.txt")
        shutil.copyfile(echarts / "NOTICE", VENDOR / "NOTICE-echarts.txt")
        for extra in sorted((echarts / "licenses").glob("LICENSE-*")):
            shutil.copyfile(extra, VENDOR / f"{extra.name}-echarts.txt")
        shutil.copyfile(roots["world-atlas"] / "LICENSE", VENDOR / "LICENSE-world-atlas.txt")
        shutil.copyfile(
            roots["i18n-iso-countries"] / "LICENSE", VENDOR / "LICENSE-i18n-iso-countries.txt"
        )
        geo = world_geojson(roots["world-atlas"], roots["i18n-iso-countries"])
        text = json.dumps(geo, separators=(",", ":"), sort_keys=True)
        (VENDOR / "world.geo.json").write_text(text + "\n")
    versions = {
        name: {"version": version, "integrity": integrity[name]}
        for name, version in PACKAGES.items()
    }
    versions["files"] = {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(VENDOR.iterdir())
        if p.name != "VERSIONS.json"
    }
    (VENDOR / "VERSIONS.json").write_text(json.dumps(versions, indent=2, sort_keys=True) + "\n")
    print(f"wrote {len(geo['features'])} countries and echarts {PACKAGES['echarts']} to {VENDOR}")


if __name__ == "__main__":
    main()
