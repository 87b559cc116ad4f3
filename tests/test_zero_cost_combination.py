"""experiments/zero_cost_combination.py on a made-up state file whose answer is known: a score built
from the truth ranks near 1 on the held-out half, a noise score near 0, a model fitted over them
ranks near 1, and every row is measured on networks the models were not fitted on."""
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from nas.benchmarks.nasbench_macro import distinct
from nas.run_dir import write_csv

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))
import zero_cost_combination as zcc  # noqa: E402
import zero_cost_fidelity as zcf  # noqa: E402

sys.path.remove(str(ROOT / "experiments"))


def made_up_state(networks: pd.DataFrame) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    values = {"naswot": networks["mean_acc"].to_numpy() + rng.normal(0, 1e-4, len(networks)),  # the truth, nearly
              "jacob_cov": rng.normal(size=len(networks)),  # noise
              "flops": rng.normal(size=len(networks))}
    return pd.DataFrame([{"group": "nasbench_macro", "network": code, "score": s, "value": v[i], "seconds": 0.1,
                          "error": ""} for s, v in values.items() for i, code in enumerate(networks.index)])


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


def test_known_answers_on_the_held_out_half(cache):
    networks = distinct()
    write_csv(zcf.state_path(), made_up_state(networks))
    assert zcc.main(["--out", str(cache / "out")]) == 0
    summary = pd.read_csv(cache / "out" / "zero_cost_combination.csv")
    held = len(networks) - len(networks) // 2
    everything = summary[summary["set"] == "all"].set_index(["method", "fitted_on"])["kendall_tau"]
    assert (summary.loc[summary["set"] == "all", "n"] == held).all()
    assert set(summary["fitted_on"]) == {0, 100, len(networks) // 2}
    assert everything[("naswot", 0)] > 0.95 and abs(everything[("jacob_cov", 0)]) < 0.1
    assert 0.3 < everything[("vote naswot+jacob_cov", 0)] < everything[("naswot", 0)]
    assert everything[("ridge over scores + latency", len(networks) // 2)] > 0.9
    assert everything[("ridge over the architecture (one-hot), no score", 100)] > 0.3  # the benchmark is learnable
    assert {"band_p25", "band_p50", "band_p75"} <= set(summary["set"])
    md = (cache / "out" / "zero_cost_combination.md").read_text()
    assert "Reproduce: `python experiments/zero_cost_combination.py`" in md
    assert (cache / "out" / "zero_cost_combination.png").stat().st_size > 0


def test_too_few_scored_networks_is_one_line(cache, capsys):
    write_csv(zcf.state_path(), made_up_state(distinct().head(150)))
    assert zcc.main(["--out", str(cache / "out")]) == 2
    err = capsys.readouterr().err
    assert "holds NASWOT and every other score for 150 networks" in err and len(err.strip().splitlines()) == 1


def test_no_state_is_one_line(cache, capsys):
    assert zcc.main(["--out", str(cache / "out")]) == 2
    assert "run experiments/zero_cost_fidelity.py first" in capsys.readouterr().err
