"""Input tables are read by what they hold, within a size limit (tracker issue 20, parts 3 and 6):
a gzip, Parquet or Stata file under another extension is named for what it is, devices and
oversized files are refused before anything is read."""

from __future__ import annotations

import os
import time
import zipfile

import pandas as pd
import pytest
from tiny_fits import tiny_csv

from bayes_spill.data import files
from bayes_spill.data.files import read_table, sniff_content, write_table
from bayes_spill.errors import InputError


def small_frame() -> pd.DataFrame:
    return pd.read_csv(tiny_csv(), dtype={"gvkey": str, "fips": str}).head(40)


# (written as, named as, what the message calls it, the name it suggests)
MISNAMED = [
    ("panel.csv.gz", "panel.csv", "a gzip-compressed file, not UTF-8 CSV text", "panel.csv.gz"),
    ("panel.parquet", "panel.csv", "a Parquet file, not UTF-8 CSV text", "panel.parquet"),
    ("panel.dta", "panel.csv", "a Stata .dta file, not UTF-8 CSV text", "panel.dta"),
    ("panel.csv", "panel.csv.gz", "text, not gzip-compressed CSV", "panel.csv"),
    ("panel.parquet", "panel.dta", "a Parquet file, not a Stata .dta file", "panel.parquet"),
    ("panel.dta", "panel.parquet", "a Stata .dta file, not a Parquet file", "panel.dta"),
]


@pytest.mark.parametrize(("written", "named", "called", "suggested"), MISNAMED)
def test_a_misnamed_file_is_named_for_what_it_is(tmp_path, written, named, called, suggested):
    path = tmp_path / named
    os.replace(write_table(small_frame(), tmp_path / f"real_{written}"), path)
    with pytest.raises(InputError) as caught:
        read_table(path)
    message = str(caught.value)
    assert f"{named}: is {called} as its name says" in message
    assert f"Rename it to {suggested}" in message
    assert "iconv" not in message  # the old message sent the user to convert text encodings


@pytest.mark.parametrize("written", ["panel.csv", "panel.csv.gz", "panel.parquet", "panel.dta"])
def test_each_kind_is_sniffed_as_itself(tmp_path, written):
    expected = {"panel.csv": "text", "panel.csv.gz": "gzip", "panel.parquet": "parquet", "panel.dta": "stata"}[written]
    assert sniff_content(write_table(small_frame(), tmp_path / written)) == expected
    assert len(read_table(tmp_path / written)) == 40


def test_an_old_stata_format_is_recognised(tmp_path):
    path = tmp_path / "old.dta"
    small_frame()[["fyear", "sale"]].to_stata(path, write_index=False, version=114)
    assert sniff_content(path) == "stata"
    os.replace(path, tmp_path / "old.csv")
    with pytest.raises(InputError, match="is a Stata .dta file"):
        read_table(tmp_path / "old.csv")


def test_an_excel_workbook_named_csv(tmp_path):
    path = tmp_path / "panel.csv"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("xl/workbook.xml", "<workbook/>")
    with pytest.raises(InputError, match=r"panel\.csv: is an Excel workbook \(\.xlsx\), not UTF-8 CSV text.*CSV UTF-8"):
        read_table(path)
    os.replace(path, tmp_path / "panel.xlsx")
    with pytest.raises(InputError, match=r"unsupported file type '\.xlsx'; it is an Excel workbook"):
        read_table(tmp_path / "panel.xlsx")


def test_utf16_text_is_called_utf16(tmp_path):
    path = tmp_path / "panel.csv"
    path.write_bytes(small_frame().to_csv(index=False).encode("utf-16"))
    with pytest.raises(InputError, match=r"is UTF-16 text, not UTF-8 CSV text.*iconv -f utf-16"):
        read_table(path)


def test_latin1_text_still_gets_the_encoding_message(tmp_path):
    path = tmp_path / "latin1.csv"
    small_frame().assign(conm="NESTLÉ").to_csv(path, index=False, encoding="latin-1")
    assert sniff_content(path) == "text"
    with pytest.raises(InputError, match=r"is not UTF-8 .*0xc9"):
        read_table(path)


# -- size limits and devices --------------------------------------------------------------------------
@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused_at_once(tmp_path, device):
    link = tmp_path / "panel.csv"
    link.symlink_to(device)
    start = time.monotonic()
    with pytest.raises(InputError, match=r"panel\.csv: is not a regular file"):
        read_table(link)
    assert time.monotonic() - start < 5


def test_a_folder_is_refused(tmp_path):
    (tmp_path / "panel.csv").mkdir()
    with pytest.raises(InputError, match=r"panel\.csv: is a folder, not a file"):
        read_table(tmp_path / "panel.csv")


@pytest.mark.parametrize("written", ["panel.csv", "panel.dta"])
def test_a_file_over_the_limit_is_refused_with_its_size(tmp_path, monkeypatch, written):
    path = write_table(small_frame(), tmp_path / written)
    monkeypatch.setenv(files.MAX_TABLE_BYTES_ENV, "1000")
    with pytest.raises(InputError) as caught:
        read_table(path)
    message = str(caught.value)
    assert f"is {files.size_text(path.stat().st_size)}, over the 1.0 kB limit for an input table" in message
    assert files.MAX_TABLE_BYTES_ENV in message
    monkeypatch.setenv(files.MAX_TABLE_BYTES_ENV, str(path.stat().st_size))
    assert len(read_table(path)) == 40  # exactly at the limit is fine


def test_a_gzip_file_is_limited_by_what_it_decompresses_to(tmp_path, monkeypatch):
    path = tmp_path / "bomb.csv.gz"
    import gzip

    with gzip.open(path, "wt") as handle:
        handle.write("gvkey,fyear\n" + "001004,2000\n" * 200_000)  # 2.4 MB of text, a few kB packed
    monkeypatch.setenv(files.MAX_TABLE_BYTES_ENV, str(100_000))
    assert path.stat().st_size < 100_000
    with pytest.raises(InputError, match=r"bomb\.csv\.gz: decompresses to more than the 100\.0 kB limit"):
        read_table(path)


def test_a_parquet_file_is_limited_by_its_uncompressed_size(tmp_path, monkeypatch):
    frame = pd.DataFrame({"gvkey": ["001004"] * 50_000, "fyear": [2000] * 50_000})
    path = write_table(frame, tmp_path / "packed.parquet")
    monkeypatch.setenv(files.MAX_TABLE_BYTES_ENV, str(path.stat().st_size + 1))
    with pytest.raises(
        InputError, match=r"packed\.parquet: holds 50,000 rows x 2 columns, at least 800\.0 kB, over the .* limit"
    ):
        read_table(path)


def test_the_limit_setting_ignores_nonsense():
    for setting in ("", "-5", "lots", "0"):
        os.environ[files.MAX_TABLE_BYTES_ENV] = setting
        try:
            assert files.max_table_bytes() == files.MAX_TABLE_BYTES
        finally:
            del os.environ[files.MAX_TABLE_BYTES_ENV]
