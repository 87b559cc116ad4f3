"""Derive the packaged Accel-NASBench data from the shared CSV.

Reads ../shared/benchmarks/accel_nasbench/accel_nasbench.csv (checked against its sha256) and
writes, in nas/benchmarks/data/:
  accel_nasbench.csv.gz       all 5,138 records in the source's order, only the columns the
                              product reads, every cell copied as the source wrote it
  LICENSE-accel_nasbench.txt  the source's Apache-2.0 license

    python experiments/derive_accel_nasbench.py [CSV]

The output is byte-for-byte deterministic (gzip mtime 0, no file name in its header).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import shutil
from pathlib import Path

from nas.benchmarks.accel_nasbench import COLUMNS, DATA_FILE, RECORDS, check_code
from search_spaces.atomic import atomic_write
from search_spaces.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "nas" / "benchmarks" / "data"
SHA256 = "b2fc32f21bdded31f8fa2325a135a9ad10153be0b86bccb4e75610ab2ce0d607"
LICENSE = "LICENSE-accel_nasbench.txt"


def csv_gz(text: str) -> bytes:
    """The records' `COLUMNS` as a gzipped CSV, rows in the source's order."""
    rows = list(csv.DictReader(io.StringIO(text)))
    if len(rows) != RECORDS:
        raise UserError(f"expected {RECORDS} records, got {len(rows)}")
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for r in rows:
        check_code(r["code"])
        writer.writerow([r[c] for c in COLUMNS])
    return gzip.compress(out.getvalue().encode(), compresslevel=9, mtime=0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("csv", nargs="?", type=Path,
                    default=ROOT.parent / "shared" / "benchmarks" / "accel_nasbench" / "accel_nasbench.csv")
    args = ap.parse_args()
    raw = args.csv.read_bytes()
    sha256 = hashlib.sha256(raw).hexdigest()
    if sha256 != SHA256:
        raise UserError(f"{args.csv}: sha256 {sha256}, expected {SHA256}")
    atomic_write(OUT / DATA_FILE, lambda tmp: tmp.write_bytes(csv_gz(raw.decode())))
    atomic_write(OUT / LICENSE, lambda tmp: shutil.copyfile(args.csv.parent / "LICENSE", tmp))
    for name in (DATA_FILE, LICENSE):
        print(f"wrote {OUT / name} ({(OUT / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
