"""What ``prepare`` did to a Compustat download, firm by firm: the record written beside the panel.

Each line names a firm (gvkey, conm), what happened to it (``action``), by which rule, in which
fiscal years, and the values that decided it (``detail``). An excluded firm has exactly one line,
for the first rule it failed; a firm in the panel has a line for each change to its data (years
dropped, xrd set to zero) and for each cross-check worth a look (notes). Rules, in the order they
are applied, are listed in ``RULES``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

EXCLUDED = "excluded firm"
DROPPED = "dropped firm-years"
DUPLICATE = "dropped duplicate row"
CHANGED = "changed"
NOTE = "note"
RECORD_COLUMNS = ("gvkey", "conm", "action", "rule", "firm_years", "fyears", "detail")

# rule -> what it means (docs/wrds.md lists the same)
RULES = {
    "no_fyear": "FUNDA rows without a fiscal year",
    "format": "no row in the standard format (indfmt INDL, datafmt STD, popsrc D, consol C)",
    "duplicate_fyear": "two standard rows for one fiscal year (a change of fiscal year end): the later datadate kept",
    "years": "fiscal years outside the years asked for",
    "currency": "amounts not in US dollars (curcd)",
    "industry": "outside the industry (historical sich where present, else the header sic/naics)",
    "industry_from_header": "firm-years classified by the header code because the historical one is missing",
    "foreign": "headquarters outside the US (loc, else fic)",
    "no_zip": "no headquarters ZIP (addzip empty)",
    "zip_not_found": "a ZIP that the crosswalk does not hold",
    "zip_state": "the ZIP's state differs from COMPANY's state",
    "county_not_in_table": "the ZIP's county is not in the county table",
    "county_by_name": "a PO Box ZIP (no ZCTA) placed by its GeoNames county name",
    "city": "COMPANY's city differs from the ZIP's primary city (cross-check only)",
    "missing_values": "sale, emp or ppent missing or <= 0 (the model takes their logs)",
    "xrd_zero": "xrd missing, set to 0 (the zero-R&D dummy absorbs it)",
    "gaps": "years missing inside the firm's panel after the rules above",
}


def year_spans(years: Iterable[int]) -> str:
    """[1990, 1991, 1992, 1995] -> '1990-1992 1995'."""
    spans: list[list[int]] = []
    for year in sorted(set(int(y) for y in years)):
        if spans and year == spans[-1][1] + 1:
            spans[-1][1] = year
        else:
            spans.append([year, year])
    return " ".join(str(a) if a == b else f"{a}-{b}" for a, b in spans)


@dataclass
class PrepareRecord:
    """The record of one ``prepare`` run.

    ``lines``: one row per firm and rule (columns ``RECORD_COLUMNS``); ``counts``: what the run
    printed, label -> number, in the order the rules ran; ``sources``: the files read and the
    price index and crosswalk used.
    """

    lines: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=list(RECORD_COLUMNS)))
    counts: dict[str, int] = field(default_factory=dict)
    sources: dict[str, str] = field(default_factory=dict)

    def excluded(self) -> pd.DataFrame:
        """The excluded firms, one line each, with the rule that excluded them.

        Returns
        -------
        pandas.DataFrame
            The lines whose action is ``excluded firm``.
        """
        return self.lines[self.lines["action"] == EXCLUDED].reset_index(drop=True)

    def report(self) -> str:
        """What ``bayes-spill prepare`` prints: sources, then the count of each rule.

        Returns
        -------
        str
            Lines of text.
        """
        width = max((len(f"{n:,}") for n in self.counts.values()), default=1)
        out = [f"{key:<12} {value}" for key, value in self.sources.items()]
        out += [f"  {n:>{width},}  {label}" for label, n in self.counts.items()]
        return "\n".join(out)

    def write(self, path: str | os.PathLike) -> Path:
        """Write the lines as CSV.

        Parameters
        ----------
        path
            The CSV file.

        Returns
        -------
        pathlib.Path
            The path written.
        """
        from bayes_spill.data.files import write_table

        return write_table(self.lines, path)


class Recorder:
    """Collects record lines while the rules run; firms excluded keep only their exclusion line."""

    def __init__(self) -> None:
        self.entries: list[dict] = []
        self.counts: dict[str, int] = {}
        self.excluded: dict[str, str] = {}

    def count(self, label: str, n: int) -> None:
        self.counts[label] = self.counts.get(label, 0) + int(n)

    def excluded_by(self, rule: str) -> int:
        """How many firms ``rule`` has excluded so far."""
        return sum(1 for r in self.excluded.values() if r == rule)

    def add(self, gvkey: str, action: str, rule: str, years: Iterable[int] = (), detail: str = "") -> None:
        years = list(years)
        if action == EXCLUDED:
            self.excluded[gvkey] = rule
        self.entries.append(
            {
                "gvkey": gvkey,
                "action": action,
                "rule": rule,
                "firm_years": len(set(years)),
                "fyears": year_spans(years),
                "detail": detail,
            }
        )

    def drop(self, rows: pd.DataFrame, mask: pd.Series, rule: str, describe) -> pd.DataFrame:
        """Drop ``rows[mask]``. A firm left with no rows is excluded by ``rule``; a firm that loses
        some fiscal years gets a ``dropped firm-years`` line; a dropped row whose firm-year still
        has another row (a duplicate in another format) gets no line, only the counts.

        ``describe(gvkey, group)`` gives the detail of a firm's dropped rows. Returns the rows kept.
        """
        mask = mask.to_numpy(dtype=bool)
        dropped, kept = rows[mask], rows[~mask]
        if dropped.empty:
            return kept
        lost = dropped[~dropped["_key"].isin(set(kept["_key"]))]
        remaining_firms = set(kept["gvkey"])
        for gvkey, group in lost.groupby("gvkey", sort=True):
            action = DROPPED if gvkey in remaining_firms else EXCLUDED
            self.add(gvkey, action, rule, group["fyear"].tolist(), describe(gvkey, group))
        return kept

    def record(self, names: pd.Series, sources: dict[str, str]) -> PrepareRecord:
        entries = [e for e in self.entries if e["gvkey"] not in self.excluded or e["action"] == EXCLUDED]
        lines = pd.DataFrame(entries, columns=[c for c in RECORD_COLUMNS if c != "conm"])
        lines.insert(1, "conm", names.reindex(lines["gvkey"]).to_numpy() if len(lines) else np.array([], dtype=object))
        order = {rule: i for i, rule in enumerate(RULES)}
        lines = lines.assign(_order=lines["rule"].map(order)).sort_values(["gvkey", "_order"], kind="stable")
        return PrepareRecord(
            lines=lines.drop(columns="_order").reset_index(drop=True), counts=dict(self.counts), sources=sources
        )
