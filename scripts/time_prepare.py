"""Time ``prepare`` on synthetic WRDS extracts of a given size (docs/wrds.md reports the numbers).

    python scripts/time_prepare.py --copies 1     # paper-sized: ~700 firms, ~6,000 raw FUNDA rows
    python scripts/time_prepare.py --copies 20    # 20x larger

The extracts are the embedded default (688 firms, 1978-2006) turned into raw FUNDA and COMPANY
frames by tests/wrds_extracts.py, repeated ``copies`` times under new gvkeys, with non-standard
format rows kept until FUNDA has 6,000 rows per copy. Both are written as CSV and timed from the
files (reading included), best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from wrds_extracts import raw_extract  # noqa: E402

from bayes_spill.data.compustat import prepare  # noqa: E402
from bayes_spill.data.datasets import dataset_path  # noqa: E402

RAW_ROWS_PER_COPY = 6000


def extract(copies: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    base = pd.read_csv(dataset_path(), dtype={"gvkey": str, "fips": str})
    base = base[base["fips"] != "51590"]  # no ZIP has Danville, VA as its dominant county
    # gvkeys 100001-100688 of copy k become 100001 + 1000 k ...: 6 digits, clear of the extra firms (9000xx)
    panels = [base.assign(gvkey=(base["gvkey"].astype(int) + 1000 * k).astype(str)) for k in range(copies)]
    funda, company = raw_extract(pd.concat(panels, ignore_index=True), extras=True)
    standard = (funda["indfmt"] == "INDL") & (funda["datafmt"] == "STD")
    extra = max(RAW_ROWS_PER_COPY * copies - int(standard.sum()), 0)
    funda = pd.concat([funda[standard], funda[~standard].head(extra)]).sample(frac=1.0, random_state=0)
    return funda, company


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--copies", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    funda, company = extract(args.copies)
    with tempfile.TemporaryDirectory() as folder:
        funda_path, company_path = Path(folder) / "funda.csv", Path(folder) / "company.csv"
        funda.to_csv(funda_path, index=False)
        company.to_csv(company_path, index=False)
        prepare(funda_path, company_path, sic=[7372], years=(1978, 2006))  # warm: the built-in tables are cached
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            panel, record = prepare(funda_path, company_path, sic=[7372], years=(1978, 2006))
            times.append(time.perf_counter() - start)
    print(
        f"prepare: {len(funda):,} FUNDA rows, {funda['gvkey'].nunique():,} firms -> {len(panel):,} firm-years of "
        f"{panel['gvkey'].nunique():,} firms, {len(record.lines):,} record lines: best of {args.repeat} "
        f"{min(times):.2f} s (all: {', '.join(f'{t:.2f}' for t in times)})"
    )


if __name__ == "__main__":
    main()
