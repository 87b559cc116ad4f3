"""Whole-network timings as `nas latency time` writes them and `nas latency fit` reads them: a CSV
with columns `arch` (an IR string) and `measured_ms`, one row per network timed end to end."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from search_spaces.atomic import atomic_write
from search_spaces.errors import UserError
from search_spaces.ir import Arch, ArchError
from search_spaces.references import load_arch

COLUMNS = ("arch", "measured_ms")


def read_archs(specs: list[str]) -> list[Arch]:
    """Networks from the command line: each spec is a text file of IR strings (one a line, as
    `nas latency plan` writes them; blank lines and # comments skipped) or one network as
    `load_arch` takes it (a reference name, an IR JSON file, an IR string)."""
    archs = []
    for spec in specs:
        path = Path(spec)
        if path.is_file() and not spec.strip().startswith("{") and path.suffix != ".json":
            lines = [line.strip() for line in path.read_text().splitlines()]
            for n, line in enumerate(lines, 1):
                if line and not line.startswith("#"):
                    try:
                        archs.append(Arch.from_string(line))
                    except ArchError as e:
                        raise UserError(f"{spec} line {n}: not an IR string ({e})") from None
        else:
            archs.append(load_arch(spec))
    if not archs:
        raise UserError("no networks to time: the files given hold no IR strings")
    return archs


def time_networks(archs: list[Arch], runner) -> pd.DataFrame:
    """Time `archs` whole with `runner` (interleaved, as a table's calibration times networks)."""
    from latency_tables.build import measure_networks

    return pd.DataFrame({"arch": [a.to_string() for a in archs], "measured_ms": measure_networks(archs, runner)})


def write_timings(path: str | Path, timings: pd.DataFrame) -> None:
    atomic_write(path, lambda tmp: timings.to_csv(tmp, index=False, float_format="%.6g"))


def read_timings(path: str | Path) -> tuple[list[Arch], np.ndarray]:
    """The networks and measured ms of a timings CSV; UserError naming the first problem."""
    where = f"timings {path}"
    try:
        df = pd.read_csv(path)
    except FileNotFoundError:
        raise UserError(f"{where}: no such file") from None
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as e:
        raise UserError(f"{where}: not a readable CSV ({str(e).strip()})") from None
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        raise UserError(f"{where}: missing column(s) {', '.join(missing)} (expected {', '.join(COLUMNS)})")
    archs = []
    for i, text in enumerate(df["arch"]):
        try:
            archs.append(Arch.from_string(str(text)))
        except ArchError as e:
            raise UserError(f"{where}: row {i + 1}: arch is not an IR string ({e})") from None
    ms = pd.to_numeric(df["measured_ms"], errors="coerce").to_numpy(float)
    bad = np.flatnonzero(~(np.isfinite(ms) & (ms > 0)))
    if len(bad):
        raise UserError(f"{where}: row {bad[0] + 1}: measured_ms {str(df['measured_ms'][bad[0]])!r} is not a "
                        f"positive number")
    return archs, ms
