"""experiments/step_profile.py end to end on this CPU with a tiny setting (its figures are the
script's, not the test's)."""
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import step_profile  # noqa: E402

sys.path.remove(str(ROOT / "experiments"))


def test_profiles_every_part_of_a_supernet_step_and_a_candidates_step(tmp_path):
    argv = ["--device", "cpu", "--space", "mnv3_small", "--resolution", "16", "--batch", "4", "--repeats", "1",
            "--threads", "1", "--top", "3", "--results", str(tmp_path)]
    assert step_profile.run_script(step_profile.parser(), step_profile.main, argv, "step_profile.py") == 0
    (csv,) = tmp_path.glob("step_profile_*.csv")
    rows = pd.read_csv(csv)
    assert rows["part"].str.startswith("forward+backward").sum() == 3
    assert (rows["ms"] > 0).all()
    whole = rows.set_index("part").loc["whole sandwich step (4 candidates)"]
    # the whole step holds the parts it is made of
    assert whole["ms"] > rows.set_index("part").loc["forward+backward smallest", "ms"]
    md = csv.with_suffix(".md").read_text()
    assert "Profiler, one sandwich step, top 3 operators" in md and "--space mnv3_small" in md


def test_an_unknown_space_is_one_line_exit_2(tmp_path, capsys):
    argv = ["--device", "cpu", "--space", "nope", "--results", str(tmp_path)]
    assert step_profile.run_script(step_profile.parser(), step_profile.main, argv, "step_profile.py") == 2
    assert capsys.readouterr().err.count("\n") == 1
