"""Rebuild bayes_spill/data/counties.csv (and counties_notes.md) from the PyPI package bokeh-sampledata.

    pip install -e ".[build-data]"
    python scripts/build_counties.py

Geometry: bokeh_sampledata.us_counties.records() (simplified 2009 Census TIGER/Line polygons).
Labor force: bokeh_sampledata/_data/unemployment09.csv.gz, the BLS LAUS 2009 annual county file
(columns: LAUS code, state FIPS, county FIPS, name, year, labor force, employed, unemployed, rate).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import shapely
from bokeh_sampledata import package_path
from bokeh_sampledata.us_counties import records

OUT_DIR = Path(__file__).resolve().parents[1] / "bayes_spill" / "data"
TERRITORIES = {"PR", "AS", "GU", "MP", "VI"}

# Counties with polygons but no row of their own in the BLS 2009 file. Each is mapped to the BLS area
# that contains it; a BLS area covering several of our polygons is split in proportion to polygon area.
BLS_AREA_OF = {
    # Census 2007: Skagway-Hoonah-Angoon (02232) split into Skagway (02230) and Hoonah-Angoon (02105).
    # The source has no Skagway polygon, so Hoonah-Angoon takes the whole BLS figure.
    "02105": "02232",
    # Census 2008: Wrangell-Petersburg (02280) split into Petersburg (02195) and Wrangell (02275).
    "02195": "02280",
    "02275": "02280",
    # Census 2008: Prince of Wales-Outer Ketchikan (02201) became Prince of Wales-Hyder (02198); the
    # nearly uninhabited Outer Ketchikan part went to Ketchikan Gateway.
    "02198": "02201",
}
# Kalawao, HI (about 90 residents) is counted within Maui County by BLS. Splitting Maui by area would
# move ~2% of Maui's workers to a leper-colony peninsula, so Kalawao gets the smallest county labor
# force in the BLS file instead, and Maui keeps its own figure.
SMALLEST = {"15005"}


def read_bls_labor_force() -> pd.Series:
    with gzip.open(package_path("unemployment09.csv.gz"), "rt", encoding="utf-8") as f:
        bls = pd.read_csv(f, header=None, dtype=str)
    num = {c: pd.to_numeric(bls[c].str.replace(",", "").str.strip()) for c in (5, 6, 7)}
    assert (bls[4] == "2009").all()
    assert (num[5] == num[6] + num[7]).all(), "column 5 should be labor force = employed + unemployed"
    fips = bls[1].str.zfill(2) + bls[2].str.zfill(3)
    return pd.Series(num[5].to_numpy(), index=fips, name="labor_force")


def _laea(lon, lat, lon0, lat0, inverse=False):
    """Spherical Lambert azimuthal equal-area projection about (lon0, lat0), all angles in degrees."""
    p0, l0 = np.radians(lat0), np.radians(lon0)
    if not inverse:
        p, dl = np.radians(lat), np.radians(lon) - l0
        k = np.sqrt(2.0 / (1.0 + np.sin(p0) * np.sin(p) + np.cos(p0) * np.cos(p) * np.cos(dl)))
        return k * np.cos(p) * np.sin(dl), k * (np.cos(p0) * np.sin(p) - np.sin(p0) * np.cos(p) * np.cos(dl))
    x, y = lon, lat
    rho = np.hypot(x, y)
    c = 2.0 * np.arcsin(rho / 2.0)
    p = np.arcsin(np.cos(c) * np.sin(p0) + (y * np.sin(c) * np.cos(p0) / rho if rho > 0 else 0.0))
    dl = np.arctan2(x * np.sin(c), rho * np.cos(p0) * np.cos(c) - y * np.sin(p0) * np.sin(c))
    return (np.degrees(l0 + dl) + 180.0) % 360.0 - 180.0, np.degrees(p)


def centroid_and_area(geometry) -> tuple[float, float, float]:
    """Area-weighted centroid (lat, lon) and area (steradians) of a (multi)polygon, on an equal-area projection.

    The projection is centred on the circular mean of the vertices, so a shape crossing the
    antimeridian is handled; holes and multiple parts are handled by shapely.
    """
    xy = shapely.get_coordinates(geometry)
    lon_r = np.radians(xy[:, 0])
    lon0 = np.degrees(np.arctan2(np.sin(lon_r).mean(), np.cos(lon_r).mean()))
    lat0 = xy[:, 1].mean()
    projected = shapely.transform(geometry, lambda c: np.column_stack(_laea(c[:, 0], c[:, 1], lon0, lat0)))
    c = projected.centroid
    lon, lat = _laea(c.x, c.y, lon0, lat0, inverse=True)
    return float(lat), float(lon), float(projected.area)


def _great_circle_km(lat1, lon1, lat2, lon2) -> float:
    p1, p2, dl = np.radians(lat1), np.radians(lat2), np.radians(lon2 - lon1)
    h = np.sin((p2 - p1) / 2) ** 2 + np.cos(p1) * np.cos(p2) * np.sin(dl / 2) ** 2
    return float(2 * 6371.0088 * np.arcsin(np.sqrt(h)))


def main() -> None:
    rows = []
    for r in records():
        if r["state"] in TERRITORIES:
            continue
        geometry = r["geometry"]
        area = centroid_and_area(geometry)[2]
        if geometry.geom_type == "MultiPolygon":
            # The polygons include water areas, and far-off islands can outweigh the populated main part
            # (Honolulu's area-weighted centroid lies 700 km out among the Northwestern Hawaiian Islands,
            # San Francisco's 22 km offshore because of the Farallones), so use the largest part.
            geometry = max(geometry.geoms, key=lambda part: centroid_and_area(part)[2])
        lat, lon, _ = centroid_and_area(geometry)
        rows.append(
            {
                "fips": r["fips"],
                "name": r["name"],
                "state": r["state"].upper(),
                "lat": lat,
                "lon": lon,
                "_area": area,
                "_multi": r["geometry"].geom_type == "MultiPolygon",
            }
        )
    df = pd.DataFrame(rows).sort_values("fips", ignore_index=True)
    assert df["fips"].str.fullmatch(r"\d{5}").all() and df["fips"].is_unique
    assert df["state"].nunique() == 51, sorted(df["state"].unique())

    bls = read_bls_labor_force()
    df["labor_force"] = df["fips"].map(bls)
    missing = df.loc[df["labor_force"].isna(), "fips"].tolist()
    unexplained = sorted(set(missing) - set(BLS_AREA_OF) - SMALLEST)
    if unexplained:
        raise SystemExit(f"no BLS 2009 labor force and no fill rule for: {', '.join(unexplained)}")

    notes = []
    for fips in missing:
        i = df.index[df["fips"] == fips][0]
        if fips in SMALLEST:
            df.loc[i, "labor_force"] = bls.min()
            rule = f"smallest county labor force in the BLS file ({bls.idxmin()})"
        else:
            area_code = BLS_AREA_OF[fips]
            sharing = df["fips"].isin([f for f, a in BLS_AREA_OF.items() if a == area_code])
            share = df.loc[i, "_area"] / df.loc[sharing, "_area"].sum()
            df.loc[i, "labor_force"] = round(bls[area_code] * share)
            rule = f"{share:.1%} (area share) of BLS area {area_code} ({bls[area_code]:,.0f})"
        notes.append(f"- {fips} {df.loc[i, 'name']}, {df.loc[i, 'state']}: {df.loc[i, 'labor_force']:,.0f} = {rule}")

    unused = sorted(set(bls.index) - set(df["fips"]) - set(BLS_AREA_OF.values()))
    df["labor_force"] = df["labor_force"].astype(np.int64)
    n_multi = int(df["_multi"].sum())
    df = df.drop(columns=["_area", "_multi"]).round({"lat": 5, "lon": 5})
    sc, sf = (df.loc[df["fips"] == f, ["lat", "lon"]].to_numpy()[0] for f in ("06085", "06075"))
    d_sc_sf = _great_circle_km(*sc, *sf)
    df.to_csv(OUT_DIR / "counties.csv", index=False)

    fill_list = "\n".join(notes)
    (OUT_DIR / "counties_notes.md").write_text(
        f"""# counties.csv

Built by `scripts/build_counties.py` from the PyPI package `bokeh-sampledata`: {len(df)} counties and
county equivalents of the 50 states and DC (Puerto Rico and the territories dropped), sorted by FIPS.

- `lat`, `lon`: area-weighted centroid of the county polygon (simplified 2009 Census TIGER/Line,
  `bokeh_sampledata.us_counties.records()`), computed on a spherical Lambert azimuthal equal-area
  projection centred on the county; 5 decimals. For the {n_multi} counties made of several parts only the
  largest part is used: the polygons include water areas, and remote islands would otherwise pull the
  centroid far from where people live (Honolulu's all-parts centroid lies 700 km away among the
  Northwestern Hawaiian Islands, San Francisco's 22 km offshore because of the Farallon Islands).
  These are geometric centroids, not population centroids (Santa Clara to San Francisco is
  {d_sc_sf:.1f} km here).
- `labor_force`: BLS LAUS 2009 annual-average civilian labor force (`_data/unemployment09.csv.gz`).

Counties with no BLS 2009 row of their own (Alaska areas redrawn by the Census in 2007-2008, which BLS
still reports under the predecessor codes, and Kalawao HI, which BLS counts within Maui) were filled:

{fill_list}

BLS rows with no polygon, not used: {len(unused)} (state FIPS {", ".join(sorted({u[:2] for u in unused}))}).
The geometry has no polygon for Skagway, AK (02230).
"""
    )
    print(f"wrote {OUT_DIR / 'counties.csv'}: {len(df)} counties, {df['state'].nunique()} states incl. DC")
    print("labor force filled for counties missing from the BLS file:")
    print(fill_list)


if __name__ == "__main__":
    main()
