"""experiments/zero_cost_fidelity.py end to end on a few networks (digits in place of CIFAR-10): every
set and score in the summary, failed scores counted, and a resume that scores only what is missing."""
import sys
from pathlib import Path

import pandas as pd
import pytest

from search_spaces.references import reference

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import zero_cost_fidelity as zcf  # noqa: E402

sys.path.remove(str(ROOT / "experiments"))


@pytest.fixture
def setup(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    images = zcf.search_images
    monkeypatch.setattr(zcf, "search_images", lambda spec, resolution: images("digits", resolution))
    gt = tmp_path / "gt.csv"
    names = ["mobilenet_v3_small", "mobilenet_v3_large", "mobilenet_v2"]
    pd.DataFrame({"name": names, "test_acc_18ep": [0.8, 0.88, 0.86],
                  "arch": [reference(n).to_string() for n in names]}).to_csv(gt, index=False)
    return ["--scores", "params,naswot", "--limit", "4", "--gt", str(gt), "--chunk", "2",
            "--out", str(tmp_path / "out")], tmp_path / "out"


def test_every_set_and_score_with_failures_counted_then_a_resume(setup, monkeypatch):
    argv, out = setup
    real = zcf.score_arch

    def flaky(name, arch, batches, seed):  # at 16 px: only the mnv3 networks
        if name == "naswot" and arch.resolution == 16 and arch.stem.out == 16:  # small and large
            raise RuntimeError("boom\nsecond line")
        if name == "params" and arch.resolution == 16 and arch.stem.out == 32:  # mobilenet_v2
            return float("-inf")
        return real(name, arch, batches, seed)

    monkeypatch.setattr(zcf, "score_arch", flaky)
    assert zcf.main(argv) == 0
    summary = pd.read_csv(out / "zero_cost_fidelity.csv")
    sets = ["all", "band_p25", "band_p50", "band_p75", "mnv3_gt_r32", "mnv3_gt_r16"]
    assert list(summary["set"]) == [s for s in sets for _ in range(2)]
    assert list(summary["score"]) == ["params", "naswot"] * len(sets)
    r16 = summary[summary["set"] == "mnv3_gt_r16"].set_index("score")
    assert r16.at["naswot", "failed"] == 2 and r16.at["naswot", "n"] == 1  # small and large: 16-channel stems
    assert r16.at["params", "failed"] == 1 and r16.at["params", "n"] == 2  # mobilenet_v2: a 32-channel stem
    all_ = summary[summary["set"] == "all"].set_index("score")
    assert (all_["n"] == 4).all() and (all_["failed"] == 0).all()
    assert all_["kendall_tau"].between(-1, 1).all() and (all_["seconds_per_candidate"] > 0).all()
    state = pd.read_csv(zcf.state_path(), dtype={"network": str}, keep_default_na=False)
    assert len(state) == 4 * 2 + 3 * 2 * 2
    errors = set(state["error"]) - {""}
    assert errors == {"RuntimeError: boom", "returned -inf"}
    md = (out / "zero_cost_fidelity.md").read_text()
    assert "Reproduce: `python experiments/zero_cost_fidelity.py --scores params,naswot --limit 4`" in md
    assert "naswot on 2 of 3 (mnv3_gt_r16)" in md and (out / "zero_cost_fidelity.png").stat().st_size > 0

    # killed before its last chunk was saved: only those scores are computed again
    state.iloc[:-2].to_csv(zcf.state_path(), index=False)
    calls = []
    monkeypatch.setattr(zcf, "score_arch", lambda *a, **k: calls.append(a[0]) or flaky(*a, **k))
    assert zcf.main(argv) == 0
    assert sorted(calls) == ["naswot", "params"]
    pd.testing.assert_frame_equal(pd.read_csv(out / "zero_cost_fidelity.csv").drop(columns="seconds_per_candidate"),
                                  summary.drop(columns="seconds_per_candidate"))


def test_an_unknown_score_is_one_line(setup, capsys):
    argv, _ = setup
    assert zcf.main(argv + ["--scores", "naswot,nope"]) == 2
    err = capsys.readouterr().err
    assert "unknown zero-cost score(s) nope (known: naswot, synflow" in err and err.count("\n") == 1
