"""`bayes-spill prepare`: a WRDS Compustat download (comp.funda + comp.company) in, a firm panel
that `validate` and `fit` read out, with the record of every firm excluded or changed beside it."""

from __future__ import annotations

import argparse


def cmd_prepare(args: argparse.Namespace) -> int:
    from bayes_spill.data.compustat import prepare, write_prepared

    panel, record = prepare(
        args.funda,
        args.company,
        sic=args.sic or (),
        naics=args.naics or (),
        years=args.years,
        price_index=args.price_index,
        missing_xrd=args.missing_xrd,
        counties=args.counties,
    )
    print(record.report())
    panel_path, record_path = write_prepared(panel, record, args.out)
    print(f"\nwrote {panel_path} ({panel['gvkey'].nunique():,} firms, {len(panel):,} firm-years)")
    print(f"wrote {record_path} ({len(record.excluded()):,} firms excluded, {len(record.lines):,} lines)")
    print(f"next: bayes-spill validate --data {panel_path}")
    return 0


def add_commands(sub) -> None:
    p = sub.add_parser(
        "prepare",
        help="turn a WRDS Compustat download (comp.funda, comp.company) into a firm panel for validate and fit",
        description=(
            "Standard filters (indfmt INDL, datafmt STD, popsrc D, consol C), the industry (historical sich, else the "
            "header sic), US headquarters, the county from the ZIP code, 2002 dollars; writes the panel and, beside it, "
            "OUT_record.csv with every firm excluded or changed and why."
        ),
    )
    p.add_argument("--funda", required=True, help="comp.funda extract (CSV, CSV.gz, Parquet or Stata .dta)")
    p.add_argument("--company", required=True, help="comp.company extract (CSV, CSV.gz, Parquet or Stata .dta)")
    p.add_argument(
        "--sic", action="append", help="SIC code or prefix of the industry (repeatable; 737 = the 3-digit group)"
    )
    p.add_argument("--naics", action="append", help="NAICS code or prefix of the industry (repeatable)")
    p.add_argument("--years", help="fiscal years to keep, e.g. 1978-2006 (default: all)")
    p.add_argument(
        "--price-index",
        help="table with columns fyear, price_index (any base year) for 2002 dollars; default: the built-in BEA GDP deflator",
    )
    p.add_argument(
        "--missing-xrd",
        choices=("zero", "error"),
        default="zero",
        help="a missing xrd: set to 0 and recorded (default), or an error",
    )
    p.add_argument("--counties", help="county table the county codes are checked against (default: built in)")
    p.add_argument("--out", required=True, help="the panel to write (.csv, .csv.gz, .parquet or .dta)")
    p.set_defaults(func=cmd_prepare)
