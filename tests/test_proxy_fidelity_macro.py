"""experiments/proxy_fidelity.py --benchmark nasbench_macro: the tiny setting on the seeded sample of 8
NAS-Bench-Macro networks, trained on CIFAR-10 (../shared/data). The runs are the sampled codes, the
summary's tau is scipy's over them, the latency bands give their n (too few for a tau), a rerun trains
only what the runs file lacks, the mnv3 study's files are left alone; bad arguments are one line."""
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from nas.benchmarks.nasbench_macro import distinct

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "experiments"))
import proxy_fidelity as pf  # noqa: E402

sys.path.remove(str(ROOT / "experiments"))

STEM = "proxy_fidelity_nasbench_macro"
#: an absolute path of a machine, as tests/test_relative_paths.py finds one in committed results
MACHINE_PATH = re.compile(r"(?<![\w./-])/(?:work|home|tmp|root)(?![\w.-])")
MNV3_FILES = ["proxy_fidelity_runs.csv", "proxy_fidelity.csv", "proxy_fidelity.md", "proxy_fidelity.png"]


def argv(out: Path, *more: str) -> list[str]:
    return ["--benchmark", "nasbench_macro", "--sample", "8", "--settings", "tiny", "--data-dir", str(DATA),
            "--device", "cpu", "--out", str(out), *more]


def read_runs(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / f"{STEM}_runs.csv", dtype={"arch_name": str})


def band_sizes(codes: list[str]) -> dict[str, int]:
    """How many of `codes` lie in each latency band, computed here from the latency table itself."""
    latency = pd.read_csv(pf.LATENCY_CSV, dtype={"code": str}).set_index("code")["local_cpu_table_ms"]
    sizes = {}
    for p in (25, 50, 75):
        t = np.percentile(latency, p)
        lat = latency.reindex(codes)
        sizes[f"band_p{p}"] = int(((lat >= 0.9 * t) & (lat <= t)).sum())
    return sizes


@pytest.mark.skipif(not (DATA / "cifar10_train.npz").exists(),
                    reason=f"CIFAR-10 not found: {DATA / 'cifar10_train.npz'} (the shared data next to the repository)")
@pytest.mark.filterwarnings("ignore:An input array is constant")  # tiny leaves every network at one val accuracy
def test_tiny_study_on_a_sample_then_a_resume(tmp_path, monkeypatch):
    out = tmp_path / "results"
    assert pf.main(argv(out)) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{STEM}{s}" for s in ("_runs.csv", ".csv", ".md", ".png"))
    assert not any((out / name).exists() for name in MNV3_FILES)

    codes = list(distinct().sample(n=8, random_state=0).index)
    runs = read_runs(out)
    assert list(runs["arch_name"]) == codes and (runs["setting"] == "tiny").all()
    assert any(c.startswith("0") for c in codes)  # a code read back as a number would lose its zeros
    assert (runs["seconds"] > 0).all()

    summary = pd.read_csv(out / f"{STEM}.csv")
    truth = distinct().loc[codes, "mean_acc"].to_numpy()
    every = summary[summary["set"] == "all"].set_index("score")
    assert list(every.index) == list(pf.SCORES) and (every["architectures"] == 8).all()
    for score, (column, sign) in pf.SCORES.items():
        expected = stats.kendalltau(sign * runs[column], truth)
        np.testing.assert_allclose(every.at[score, "kendall_tau"], expected.statistic, equal_nan=True)
        np.testing.assert_allclose(every.at[score, "kendall_p"], expected.pvalue, equal_nan=True)
    assert np.isfinite(every.at["train_loss", "kendall_tau"])  # tiny's one score that differs between networks
    assert every["seconds_per_candidate"].to_numpy() == pytest.approx(runs["seconds"].mean())

    sizes = band_sizes(codes)
    bands = summary[summary["set"] != "all"]
    assert list(dict.fromkeys(bands["set"])) == list(sizes) and all(n < pf.MIN_NETWORKS for n in sizes.values())
    assert dict(zip(bands["set"], bands["architectures"])) == sizes
    assert bands["kendall_tau"].isna().all() and bands["spearman_rho"].isna().all()  # n < 8: no tau

    md = (out / f"{STEM}.md").read_text()
    assert ("Reproduce: `python experiments/proxy_fidelity.py --benchmark nasbench_macro --sample 8 --settings tiny "
            "--device cpu --out ") in md
    assert not MACHINE_PATH.search(md) and "nan" not in md  # ../../tmp/..., never /tmp/...
    assert f"| tiny | val_acc | band_p50 | {sizes['band_p50']} |  |  |  |" in md

    # resume: a killed run lost its last two networks; only those are trained again
    write = read_runs(out)
    write.head(6).to_csv(out / f"{STEM}_runs.csv", index=False)
    trained = []
    evaluate = pf.evaluate

    def counting(setting, arch, data, threads, device="cpu"):
        trained.append(arch.to_string())
        return evaluate(setting, arch, data, threads, device)

    monkeypatch.setattr(pf, "evaluate", counting)
    assert pf.main(argv(out)) == 0
    arch_of = pf.nasbench_macro_study(8, None).gt.set_index("name")["arch"]
    assert trained == [arch_of[c] for c in codes[6:]]
    assert sorted(read_runs(out)["arch_name"]) == sorted(codes)

    # and once all are there, nothing at all (no data loaded either)
    def fail(*args, **kwargs):
        raise AssertionError("a rerun trained again")

    monkeypatch.setattr(pf, "evaluate", fail)
    monkeypatch.setattr(pf, "load_data", fail)
    before = (out / f"{STEM}_runs.csv").read_text()
    assert pf.main(argv(out)) == 0
    assert (out / f"{STEM}_runs.csv").read_text() == before
    assert not any((out / name).exists() for name in MNV3_FILES)


@pytest.mark.parametrize("args, message", [
    (["--benchmark", "nasbench_macro", "--settings", "tiny,huge"], "unknown setting(s) huge (known: 2k_e1_r32,"),
    (["--benchmark", "nasbench_201"], "unknown benchmark nasbench_201 (known: nasbench_macro)"),
    (["--benchmark", "nasbench_macro", "--sample", "7"], "--sample must be at least 8, got 7"),
    (["--sample", "20"], "--sample applies to --benchmark only"),
])
def test_bad_arguments_are_one_line(args, message, capsys, tmp_path):
    out = tmp_path / "out"
    assert pf.main([*args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("proxy_fidelity.py: error: ") and message in err
    assert not out.exists()
