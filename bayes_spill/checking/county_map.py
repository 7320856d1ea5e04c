"""The county map of a fit: choropleths of firms per county, of the posterior mean absorptive
capacity and of the spillover field Sbar, drawn as county polygons.

The polygons ship with the package (bayes_spill/data/county_shapes.npz, the Census 2010
cartographic boundaries at 1:500,000, simplified; scripts/build_county_shapes.py and
county_shapes_notes.md say how). They are drawn with matplotlib alone: an Albers equal-area
projection of the lower 48 states, Alaska and Hawaii as insets in projections of their own, and
zooms on the Bay Area and Boston, where software firms cluster. Counties matched on their 5-digit
FIPS code; a county of the fit's table with no polygon is named on the figure, never dropped
silently (``missing_polygons``).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np

SHAPES_FILE = "county_shapes.npz"
# Counties of the built-in table (data/counties.csv, 2009 vintage) with no polygon in the shipped
# shapes (2010 vintage). None today; a county added here is drawn as missing and named on the map.
KNOWN_WITHOUT_POLYGON: frozenset[str] = frozenset()
EARTH_RADIUS_KM = 6371.0088
# Albers equal-area conic (standard parallel 1, standard parallel 2, origin latitude, central
# meridian), the usual ones of the USGS national maps.
ALBERS = {
    "lower48": (29.5, 45.5, 23.0, -96.0),
    "alaska": (55.0, 65.0, 50.0, -154.0),
    "hawaii": (8.0, 18.0, 3.0, -157.0),
}
# Zoom windows (lon_min, lon_max, lat_min, lat_max)
BAY_AREA = (-123.2, -121.2, 36.8, 38.5)
BOSTON = (-72.0, -70.5, 41.8, 43.0)


@dataclass(frozen=True)
class CountyShapes:
    """County polygons: for county k, ``polygons[k]`` is a list of polygons, each a list of rings
    (outer ring first, then holes) as (n, 2) arrays of lon/lat degrees."""

    fips: np.ndarray
    polygons: tuple

    def position(self) -> dict[str, int]:
        return {f: i for i, f in enumerate(self.fips.tolist())}


@functools.cache
def load_shapes() -> CountyShapes:
    """The county polygons shipped with the package (read once per process).

    Returns
    -------
    CountyShapes
    """
    with resources.files("bayes_spill.data").joinpath(SHAPES_FILE).open("rb") as f:
        z = np.load(f, allow_pickle=False)
        arrays = {k: z[k] for k in z.files}
    scale = float(arrays["scale"])
    steps = arrays["steps"].astype(np.int64)
    ring_vertices, part_rings, county_parts = arrays["ring_vertices"], arrays["part_rings"], arrays["county_parts"]
    rings = [
        np.cumsum(steps[a:b], axis=0) / scale for a, b in zip(ring_vertices[:-1], ring_vertices[1:])
    ]  # steps along each ring back to absolute coordinates
    parts = [rings[a:b] for a, b in zip(part_rings[:-1], part_rings[1:])]
    polygons = tuple(parts[a:b] for a, b in zip(county_parts[:-1], county_parts[1:]))
    return CountyShapes(arrays["fips"].astype(str), polygons)


def missing_polygons(fips) -> list[str]:
    """The FIPS codes among ``fips`` that have no polygon in the shipped shapes.

    Parameters
    ----------
    fips : array-like of str
        5-digit county FIPS codes.

    Returns
    -------
    list of str
        Sorted; empty when every county can be drawn.
    """
    have = load_shapes().position()
    return sorted({str(f) for f in np.asarray(fips).tolist()} - have.keys())


def region_of(fips: str) -> str:
    return {"02": "alaska", "15": "hawaii"}.get(fips[:2], "lower48")


def albers(lon, lat, region: str = "lower48") -> tuple[np.ndarray, np.ndarray]:
    """Spherical Albers equal-area conic projection of degrees to km (x east, y north).

    Parameters
    ----------
    lon, lat : array-like
        Degrees; longitudes east of 0 are read as west of 180 (the Aleutians).
    region : str
        A key of ``ALBERS``.

    Returns
    -------
    tuple of numpy.ndarray
    """
    p1, p2, p0, l0 = np.radians(ALBERS[region])
    lon = np.asarray(lon, dtype=float)
    lon = np.where(lon > 0, lon - 360.0, lon)
    phi, lam = np.radians(lat), np.radians(lon)
    n = 0.5 * (np.sin(p1) + np.sin(p2))
    c = np.cos(p1) ** 2 + 2 * n * np.sin(p1)
    rho0 = np.sqrt(c - 2 * n * np.sin(p0)) / n
    rho = np.sqrt(c - 2 * n * np.sin(phi)) / n
    theta = n * (lam - l0)
    return EARTH_RADIUS_KM * rho * np.sin(theta), EARTH_RADIUS_KM * (rho0 - rho * np.cos(theta))


@functools.cache
def projected(region: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{fips: (vertices, path codes)} of the region's counties in its projection: one compound
    path per county (every polygon and hole of it), ready for a PolyCollection."""
    from matplotlib.path import Path as MplPath

    shapes = load_shapes()
    out = {}
    for code, polygons in zip(shapes.fips.tolist(), shapes.polygons):
        if region_of(code) != region:
            continue
        verts, codes = [], []
        for polygon in polygons:
            for ring in polygon:
                x, y = albers(ring[:, 0], ring[:, 1], region)
                verts.append(np.column_stack([np.append(x, x[0]), np.append(y, y[0])]))
                c = np.full(len(x) + 1, MplPath.LINETO, dtype=np.uint8)
                c[0], c[-1] = MplPath.MOVETO, MplPath.CLOSEPOLY
                codes.append(c)
        out[code] = (np.concatenate(verts), np.concatenate(codes))
    return out


def county_collection(paths: dict, fips, values=None, **style):
    """A PolyCollection with one path per county of ``fips`` that has a polygon in ``paths``,
    coloured by ``values`` (an array aligned with ``fips``) when given."""
    from matplotlib.collections import PolyCollection

    keep = [i for i, f in enumerate(fips) if f in paths]
    coll = PolyCollection([], **style)
    coll.set_verts_and_codes([paths[fips[i]][0] for i in keep], [paths[fips[i]][1] for i in keep])
    if values is not None:
        coll.set_array(np.asarray(values, dtype=float)[keep])
    return coll


def _window(lon_lat_box) -> tuple[float, float, float, float]:
    x0, x1, y0, y1 = lon_lat_box
    lon = np.array([x0, x1, x0, x1, 0.5 * (x0 + x1), 0.5 * (x0 + x1)])
    lat = np.array([y0, y0, y1, y1, y0, y1])
    x, y = albers(lon, lat)
    return float(x.min()), float(x.max()), float(y.min()), float(y.max())


@functools.cache
def _bounds(region: str) -> dict[str, np.ndarray]:
    return {f: np.concatenate([v.min(axis=0), v.max(axis=0)]) for f, (v, _) in projected(region).items()}


def _draw_layer(ax, region: str, all_fips, data_fips, values, cmap, norm, edge: float, window=None):
    """Every county of the table in light grey, and those with data coloured (gid "data", one
    path per county with data and a polygon); with a window (x0, x1, y0, y1) only the counties
    that reach into it, so a zoom does not draw the whole country."""
    paths = projected(region)
    if window is not None:
        x0, x1, y0, y1 = window
        bounds = _bounds(region)
        paths = {
            f: p
            for f, p in paths.items()
            if bounds[f][0] < x1 and bounds[f][2] > x0 and bounds[f][1] < y1 and bounds[f][3] > y0
        }
    background = [f for f in all_fips if f in paths]
    ax.add_collection(county_collection(paths, background, facecolor="0.92", edgecolor="0.75", linewidths=0.5 * edge))
    coll = county_collection(paths, data_fips, values, cmap=cmap, norm=norm, edgecolor="0.25", linewidths=edge)
    coll.set_gid("data")
    ax.add_collection(coll)
    ax.set_aspect("equal")
    ax.set_xticks([])
    ax.set_yticks([])
    return coll


def _fit_region(ax, region: str, fips) -> None:
    paths = projected(region)
    xy = np.concatenate([paths[f][0] for f in fips if f in paths] or [np.zeros((1, 2))])
    (x0, y0), (x1, y1) = xy.min(axis=0), xy.max(axis=0)
    pad = 0.02 * max(x1 - x0, y1 - y0)
    ax.set_xlim(x0 - pad, x1 + pad)
    ax.set_ylim(y0 - pad, y1 + pad)


def map_layers(values: dict, counties) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(key, title, county FIPS with data, values) per map row, from ``figures.county_values``."""
    fips = np.asarray(counties.fips).astype(str)
    layers = []
    if "firms" in values:
        occ = fips[values["occupied"]]
        layers.append(("firms", "Firms per county", occ, np.asarray(values["firms"], dtype=float)))
        layers.append(("alpha", "Posterior mean absorptive capacity alpha_i (county mean)", occ, values["alpha"]))
    layers.append(("sbar", "Spillover field Sbar ($ bil)", fips, np.asarray(values["sbar"], dtype=float)))
    return layers


def county_map_figure(values: dict, counties):
    """The map figure: one row per layer of ``map_layers``, columns the lower 48 states (Alaska
    and Hawaii inset) and the Bay Area and Boston zooms.

    Parameters
    ----------
    values : dict
        ``figures.county_values`` of the fit.
    counties : bayes_spill.data.geography.Counties
        The fit's county table.

    Returns
    -------
    matplotlib.figure.Figure
    """
    from matplotlib.colors import LogNorm, TwoSlopeNorm
    from matplotlib.figure import Figure

    all_fips = np.asarray(counties.fips).astype(str).tolist()
    layers = map_layers(values, counties)
    fig = Figure(figsize=(13.0, 4.2 * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), 3, squeeze=False, width_ratios=[2.4, 1, 1])
    for r, (key, title, data_fips, v) in enumerate(layers):
        data_fips = data_fips.tolist()
        finite = v[np.isfinite(v)]
        if key == "alpha":
            bound = float(np.max(np.abs(finite))) if finite.size and np.max(np.abs(finite)) > 0 else 1.0
            cmap, norm = "RdBu_r", TwoSlopeNorm(0.0, -bound, bound)
        else:
            hi = float(finite.max()) if finite.size and finite.max() > 0 else 1.0
            lo = max(float(finite[finite > 0].min()) if (finite > 0).any() else hi, hi * 1e-6)
            cmap, norm = ("viridis" if key == "sbar" else "plasma"), LogNorm(vmin=min(lo, hi * 0.999), vmax=hi)
            v = np.maximum(v, lo)
        main = axes[r, 0]
        coll = _draw_layer(main, "lower48", all_fips, data_fips, v, cmap, norm, 0.08)
        _fit_region(main, "lower48", [f for f in all_fips if region_of(f) == "lower48"])
        main.set_title(f"{title}: lower 48 states, Alaska and Hawaii inset", fontsize=9)
        for region, box in (("alaska", [0.0, 0.0, 0.24, 0.3]), ("hawaii", [0.25, 0.0, 0.16, 0.16])):
            in_region = [f for f in all_fips if region_of(f) == region]
            if not in_region:
                continue
            inset = main.inset_axes(box)
            _draw_layer(inset, region, all_fips, data_fips, v, cmap, norm, 0.05)
            _fit_region(inset, region, in_region)
            for side in inset.spines.values():
                side.set_edgecolor("0.6")
        for col, (label, box) in enumerate((("Bay Area", BAY_AREA), ("Boston", BOSTON)), start=1):
            ax = axes[r, col]
            x0, x1, y0, y1 = _window(box)
            _draw_layer(ax, "lower48", all_fips, data_fips, v, cmap, norm, 0.4, window=(x0, x1, y0, y1))
            ax.set_xlim(x0, x1)
            ax.set_ylim(y0, y1)
            ax.set_title(label, fontsize=9)
            main.indicate_inset([x0, y0, x1 - x0, y1 - y0], edgecolor="k")
        fig.colorbar(coll, ax=axes[r, :].tolist(), shrink=0.85)
    missing = missing_polygons(all_fips)
    note = f"Sbar at the posterior median half-life {values['halflife_km']:.0f} km; Albers equal-area projections."
    if missing:
        shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
        note += f" {len(missing)} counties of the table have no polygon and are not drawn: {shown}."
    fig.suptitle(note, fontsize=9)
    return fig
