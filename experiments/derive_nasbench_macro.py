"""Derive the packaged NAS-Bench-Macro data from the published JSON.

Reads ../shared/benchmarks/nasbench_macro/nas-bench-macro_cifar10.json (checked against the
sha256 of the upstream file) and writes, in nas/benchmarks/data/:
  nasbench_macro_cifar10.csv.gz    all 6,561 codes, sorted, floats written exactly (repr)
  LICENSE-nasbench_macro.txt       the source's Apache-2.0 license
  README.md                        provenance

    python experiments/derive_nasbench_macro.py [JSON]

The output is byte-for-byte deterministic (gzip mtime 0, no file name in its header).
"""
from __future__ import annotations

import argparse
import csv
import gzip
import hashlib
import io
import json
import shutil
from pathlib import Path

from nas.benchmarks.nasbench_macro import CHOICES, CODE_LENGTH, DATA_FILE, check_code
from search_spaces.atomic import atomic_write
from search_spaces.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "nas" / "benchmarks" / "data"
# The file at that commit (checked against the upstream repository's blob). The shared README
# abbreviates it as 686dee83...c539bc522297: its tail has a typo, the hash ends e539bc522297.
SHA256 = "686dee8363cc21cca8c1f321ad5749454f2d9b9ca5972682e137e539bc522297"
COLUMNS = ["code", "acc_seed0", "acc_seed1", "acc_seed2", "mean_acc", "std", "params", "flops"]
COMMIT = "61a2bfc2ca0dce04d0997e6cf498047c27d6acf2"


def csv_gz(data: dict) -> bytes:
    """The records as a gzipped CSV, one row per code in code order."""
    text = io.StringIO()
    out = csv.writer(text, lineterminator="\n")
    out.writerow(COLUMNS)
    for code in sorted(data):
        r = data[check_code(code)]
        if len(r["test_acc"]) != 3:
            raise UserError(f"{code}: expected 3 accuracies, got {r['test_acc']!r}")
        floats = [*r["test_acc"], r["mean_acc"], r["std"]]
        out.writerow([code, *(repr(float(x)) for x in floats), int(r["params"]), int(r["flops"])])
    return gzip.compress(text.getvalue().encode(), compresslevel=9, mtime=0)


def readme(size: int) -> str:
    return f"""# Packaged benchmark data

## nasbench_macro_cifar10.csv.gz

NAS-Bench-Macro (Su et al., "Prioritized Architecture Sampling with Monte-Carlo Tree Search",
CVPR 2021): {len(CHOICES) ** CODE_LENGTH:,} CIFAR-10 networks of MobileNetV2 blocks, each trained
from scratch with three seeds. Read it through `nas.benchmarks.nasbench_macro`.

- Source: public repository xiusu/NAS-Bench-Macro, commit `{COMMIT}`,
  file `data/nas-bench-macro_cifar10.json` (sha256 `{SHA256}`, {size:,} bytes).
- License: Apache License 2.0, `LICENSE-nasbench_macro.txt` beside this file (copied from the
  source repository).
- Derived by `python experiments/derive_nasbench_macro.py` (from the repository root), which
  checks the JSON's sha256 and writes one row per code, sorted by code: `code` (8 characters of
  0/1/2, leading zeros kept), `acc_seed0`, `acc_seed1`, `acc_seed2` (the JSON's `test_acc`, in
  percent), `mean_acc`, `std`, `params`, `flops`. Floats are written with Python's `repr`, so
  they read back exactly; values are otherwise unchanged. Gzip with mtime 0: rerunning the
  script gives the same bytes.
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("json", nargs="?", type=Path,
                    default=ROOT.parent / "shared" / "benchmarks" / "nasbench_macro" / "nas-bench-macro_cifar10.json")
    args = ap.parse_args()
    raw = args.json.read_bytes()
    sha256 = hashlib.sha256(raw).hexdigest()
    if sha256 != SHA256:
        raise UserError(f"{args.json}: sha256 {sha256}, expected {SHA256}")
    data = json.loads(raw)
    if len(data) != len(CHOICES) ** CODE_LENGTH:
        raise UserError(f"{args.json}: {len(data)} codes, expected {len(CHOICES) ** CODE_LENGTH}")
    atomic_write(OUT / DATA_FILE, lambda tmp: tmp.write_bytes(csv_gz(data)))
    atomic_write(OUT / "LICENSE-nasbench_macro.txt", lambda tmp: shutil.copyfile(args.json.parent / "LICENSE", tmp))
    atomic_write(OUT / "README.md", lambda tmp: tmp.write_text(readme(len(raw))))
    for name in (DATA_FILE, "LICENSE-nasbench_macro.txt", "README.md"):
        print(f"wrote {OUT / name} ({(OUT / name).stat().st_size:,} bytes)")


if __name__ == "__main__":
    main()
