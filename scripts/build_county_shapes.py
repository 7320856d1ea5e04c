"""Rebuild bayes_spill/data/county_shapes.npz (and county_shapes_notes.md) from the PyPI package plotly-geo.

    pip install -e ".[build-data]"
    python scripts/build_county_shapes.py

Source: the Census 2010 cartographic boundary file of counties at 1:500,000
(``gz_2010_us_050_00_500k``) that plotly-geo ships in ``_plotly_geo/package_data``. Its vintage
matches counties.csv (2009 TIGER/Line): every county of counties.csv has a polygon there. The
cartographic boundary files are clipped to the shoreline, which is what a map should show.

Each county's polygons are simplified with shapely (Douglas-Peucker, topology preserved) at
TOLERANCE degrees, their vertices rounded to 1/SCALE degree and stored as int32 differences
along each ring (so the compressed file is small). ``bayes_spill.checking.county_shapes`` reads it.
"""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import shapefile  # pyshp
import shapely
from _plotly_geo import __file__ as plotly_geo_init

OUT_DIR = Path(__file__).resolve().parents[1] / "bayes_spill" / "data"
SOURCE = Path(plotly_geo_init).parent / "package_data" / "gz_2010_us_050_00_500k.shp"
TOLERANCE = 0.005  # degrees (about 0.5 km): county borders stay recognisable in a metro zoom
SCALE = 10_000  # vertices rounded to 1e-4 degree (about 10 m), far below the tolerance
MIN_AREA = 1e-4  # square degrees (about 1 km2): islets below this are dropped
FORMAT_VERSION = 1


def county_polygons(record, shape) -> list[list[np.ndarray]]:
    """[[outer ring, hole, ...], ...] of one county, simplified, in lon/lat degrees."""
    geometry = shapely.geometry.shape(shape.__geo_interface__)
    simple = shapely.simplify(geometry, TOLERANCE, preserve_topology=True)
    parts = list(simple.geoms) if hasattr(simple, "geoms") else [simple]
    kept = [p for p in parts if p.area >= MIN_AREA] or [max(parts, key=lambda p: p.area)]
    out = []
    for polygon in kept:
        polygon = shapely.geometry.polygon.orient(polygon, sign=1.0)  # outer counter-clockwise, holes clockwise
        rings = [np.asarray(polygon.exterior.coords)[:-1]]
        rings += [np.asarray(r.coords)[:-1] for r in polygon.interiors if shapely.Polygon(r).area >= MIN_AREA]
        out.append([r for r in rings if len(r) >= 3])
    return out


def build_arrays():
    """The arrays of county_shapes.npz: county -> parts -> rings -> vertices, CSR-style."""
    reader = shapefile.Reader(str(SOURCE), encoding="latin1")
    rows = []
    for record, shape in zip(reader.iterRecords(), reader.iterShapes()):
        if int(record["STATE"]) > 56:  # Puerto Rico (counties.csv has the 50 states and DC only)
            continue
        rows.append((record["STATE"] + record["COUNTY"], county_polygons(record, shape)))
    rows.sort(key=lambda r: r[0])
    county_parts, part_rings, ring_vertices, deltas = [0], [0], [0], []
    for _, polygons in rows:
        for polygon in polygons:
            for ring in polygon:
                q = np.round(ring * SCALE).astype(np.int64)
                # the first vertex absolute, the rest as steps along the ring
                deltas.append(np.diff(q, axis=0, prepend=np.zeros((1, 2), np.int64)))
                ring_vertices.append(ring_vertices[-1] + len(q))
            part_rings.append(part_rings[-1] + len(polygon))
        county_parts.append(county_parts[-1] + len(polygons))
    steps = np.concatenate(deltas)
    assert np.abs(steps).max() < 2**31  # absolute first vertices are at most 180 * SCALE
    return {
        "format_version": np.array(FORMAT_VERSION),
        "scale": np.array(SCALE),
        "fips": np.array([r[0] for r in rows], dtype="U5"),
        "county_parts": np.array(county_parts, dtype=np.int32),
        "part_rings": np.array(part_rings, dtype=np.int32),
        "ring_vertices": np.array(ring_vertices, dtype=np.int32),
        "steps": steps.astype(np.int32),
    }


def main() -> None:
    arrays = build_arrays()
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    data = buffer.getvalue()
    path = OUT_DIR / "county_shapes.npz"
    path.write_bytes(data)
    counties = pd.read_csv(OUT_DIR / "counties.csv", dtype={"fips": str})
    missing = sorted(set(counties["fips"]) - set(arrays["fips"]))
    extra = sorted(set(arrays["fips"]) - set(counties["fips"]))
    source_sha = hashlib.sha256(SOURCE.read_bytes()).hexdigest()
    notes = f"""# county_shapes.npz

County polygons for the county maps of `bayes-spill check` (`bayes_spill.checking.county_shapes`),
built by `scripts/build_county_shapes.py` from the PyPI package `plotly-geo` 1.0.0 (MIT licence for
the package), file `_plotly_geo/package_data/gz_2010_us_050_00_500k.shp` (sha256 {source_sha[:16]}...):
the US Census Bureau's 2010 cartographic boundary file of counties at 1:500,000 (clipped to the
shoreline). Census TIGER and cartographic boundary files are works of the US federal government and in
the public domain.

- {len(arrays["fips"])} counties and county equivalents of the 50 states and DC (Puerto Rico dropped),
  sorted by 5-digit FIPS, {len(arrays["part_rings"]) - 1} polygons, {len(arrays["ring_vertices"]) - 1} rings,
  {len(arrays["steps"])} vertices; {len(data) / 1024:.0f} KiB compressed.
- Simplified with shapely (Douglas-Peucker, topology preserved) at {TOLERANCE} degrees (about 0.5 km);
  polygons and holes under {MIN_AREA} square degrees (about 1 km2) dropped, except a county's largest.
  Neighbouring counties are simplified separately, so their shared borders can leave slivers of a few
  hundred metres: invisible at the scale of the maps.
- Vertices in lon/lat degrees rounded to 1/{SCALE} degree, stored as int32 steps along each ring
  (the first vertex of a ring absolute); `county_parts`, `part_rings`, `ring_vertices` are offsets
  (county -> polygons -> rings -> vertices). Outer rings counter-clockwise, holes clockwise.
- Counties of counties.csv without a polygon: {", ".join(missing) if missing else "none"}.
  Polygons not in counties.csv (kept, so a user county table that has them is drawn):
  {", ".join(extra) if extra else "none"}. Skagway, AK (02230) became a borough in 2007.
- Rerunning the script on the same plotly-geo and shapely writes the same bytes.
"""
    (OUT_DIR / "county_shapes_notes.md").write_text(notes, encoding="utf-8")
    print(f"wrote {path} ({len(data) / 1024:.0f} KiB), {len(arrays['fips'])} counties; missing: {missing}")


if __name__ == "__main__":
    main()
