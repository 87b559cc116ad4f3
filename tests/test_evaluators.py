"""Every evaluator of `--evaluator SPEC` through the one interface (check, a candidate's evaluation,
describe) on a tiny case; the zero-cost evaluator's batches, calibration and errors; a zc search."""
import json
import math
import random

import numpy as np
import pandas as pd
import pytest
import torch

from nas.cli import main
from nas.data import load_data
from nas.evaluation import evaluate_candidate
from nas.evaluators import CALIBRATION_NETWORKS, EVALUATORS, Calibration, ZeroCost, evaluator, score_batches
from nas.reward import Reward
from nas.run_config import RunConfig
from nas.zero_cost import SCORES, score_arch
from search_spaces.errors import UserError
from search_spaces.proxy import for_proxy
from search_spaces.space import get_space

BASE_JOB = dict(target="pixel_cpu", data="digits", resolution=8, deploy_resolution=32, train_subset=64, seed=0,
                epochs=1, steps=1, batch_size=16, lr=0.1, optimizer="sgd", threads=1, device="cpu")


def job_for(space: str, spec: str, **over) -> dict:
    return BASE_JOB | {"space": space, "evaluator": spec,
                       "vector": get_space(space).sample(random.Random(3))} | over


def config_of(job: dict) -> RunConfig:
    return RunConfig.from_json(json.dumps({k: v for k, v in job.items() if k != "vector"}), "test", needed=())


@pytest.fixture(scope="module")
def supernet_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("supernet") / "sn"
    assert main(["supernet", "train", "--space", "mnv3_small", "--data", "digits", "--train-subset", "48",
                 "--batch-size", "16", "--random-candidates", "1", "--epochs", "1", "--quiet", "--out", str(out)]) == 0
    return out


def cases(supernet_dir):
    """(spec, job, words describe must say) per evaluator kind."""
    return {"train": ("train", job_for("mnv3", "train", deploy_resolution=224), "1 epoch(s) per candidate"),
            "supernet": (f"supernet:{supernet_dir}",
                         job_for("mnv3_small", f"supernet:{supernet_dir}", resolution=16, train_subset=48),
                         "slice of the supernet"),
            "benchmark": ("benchmark:nasbench_macro:mean", job_for("nasbench_macro", "benchmark:nasbench_macro:mean"),
                          "looked up in NAS-Bench-Macro"),
            "zc": ("zc:naswot", job_for("nasbench_macro", "zc:naswot"), "not an accuracy")}


@pytest.mark.parametrize("kind", sorted(EVALUATORS))
def test_each_evaluator_through_the_one_interface(kind, supernet_dir):
    spec, job, words = cases(supernet_dir)[kind]
    scorer = evaluator(spec)
    assert scorer.check(job["space"], 10, job["resolution"]) == spec
    row = evaluate_candidate(job)
    assert row["status"] == "ok", row["reason"]
    assert 0 <= row["accuracy"] <= 1 and row["latency_ms"] > 0 and row["weights"]
    assert words in scorer.describe(config_of(job))


def test_zero_cost_batches_are_the_search_training_data_normalized():
    data = load_data("digits", resolution=8, train_subset=64, seed=0)
    two = score_batches(data, "zico", 16, seed=0)  # ZiCo's statistic needs two batches
    assert [(x.shape, y.shape) for x, y in two] == [((16, 3, 8, 8), (16,))] * 2
    assert not torch.equal(two[0][0], two[1][0])
    x = torch.cat([b[0] for b in score_batches(data, "naswot", 64, seed=0)])
    assert abs(float(x.mean())) < 0.1 and abs(float(x.std()) - 1) < 0.1  # the training set's statistics
    assert len(score_batches(data, "naswot", 16, seed=0)) == 1
    assert torch.equal(score_batches(data, "naswot", 16, seed=1)[0][0], score_batches(data, "naswot", 16, seed=1)[0][0])


@pytest.mark.parametrize("name", ["naswot", "zico"])
def test_a_zero_cost_accuracy_is_the_score_quantile_of_the_proxy_network(name):
    job = job_for("nasbench_macro", f"zc:{name}")
    data = load_data("digits", resolution=8, train_subset=64, seed=0)
    arch = get_space("nasbench_macro").decode(job["vector"]).replace(num_classes=10, resolution=32)
    scorer = evaluator(job["evaluator"])
    model, accuracy = scorer.score(job, data, arch)
    # the score of `nas.zero_cost` on the network training would start from, at the proxy resolution
    raw = score_arch(name, for_proxy(arch, 8), score_batches(data, name, 16, seed=0), seed=0)
    assert math.isfinite(raw) and accuracy == pytest.approx(scorer.calibration(job, data).quantile(raw))
    assert 0 < accuracy < 1 and sum(p.numel() for p in model.parameters()) > 0


def test_the_calibration_is_a_rank_preserving_quantile():
    calib = Calibration.fit(np.sinh(np.array([0.0, 1, 2, 3, 4, -np.inf, np.nan])), "s")  # asinh: quartiles 1, 2, 3
    assert [calib.quantile(np.sinh(v)) for v in (1, 2, 3)] == pytest.approx([0.25, 0.5, 0.75])
    scores = [-1e3, -65.0, -1.0, 0.0, 2.0, 800.0, 1e29]  # jacob_cov is negative, synflow huge
    quantiles = [calib.quantile(s) for s in scores]
    assert quantiles == sorted(quantiles) and len(set(quantiles)) == len(scores) and 0 < min(quantiles)
    with pytest.raises(ValueError, match="cannot rank this space's networks: 3 of 4"):
        Calibration.fit(np.array([5.0, 5.0, 5.0, np.nan]), "s")


def test_a_score_that_is_not_finite_fails_the_trial_with_its_value(monkeypatch):
    monkeypatch.setattr(ZeroCost, "raw", lambda self, job, data, arch: (torch.nn.Linear(1, 1), -math.inf))
    row = evaluate_candidate(job_for("nasbench_macro", "zc:naswot"))
    assert row["status"] == "failed" and row["reason"] == "ValueError: naswot score is -inf"


def test_the_reward_refuses_an_accuracy_that_is_not_a_fraction():
    # a negative one would make the latency penalty a bonus
    with pytest.raises(ValueError, match="not a fraction"):
        Reward("soft", 10.0).scalar(-65.0, 20.0)
    assert math.isnan(Reward("soft", 10.0).scalar(math.nan, 20.0))  # a diverged training stays a NaN reward


def test_a_bad_score_name_is_one_line(tmp_path, capsys):
    with pytest.raises(UserError, match=f"unknown zero-cost score 'nope' \\(known: {', '.join(SCORES)}\\)"):
        evaluator("zc:nope").check("nasbench_macro", 10, 32)
    for spec in ("zc:nope", "zc"):
        assert main(["search", "--space", "nasbench_macro", "--evaluator", spec, "--out", str(tmp_path / "run"),
                     "--quiet"]) == 2
        err = capsys.readouterr().err
        assert "unknown zero-cost score" in err and err.count("\n") == 1 and not (tmp_path / "run").exists()


def test_a_zero_cost_search_end_to_end(tmp_path):
    out = tmp_path / "run"
    assert main(["search", "--space", "nasbench_macro", "--target", "pixel_cpu", "--controller", "random",
                 "--evaluator", "zc:naswot", "--trials", "3", "--final-top", "0", "--out", str(out), "--quiet"]) == 0
    # --final-top 0: the training after a screen is tests/test_cpu_default.py's
    cfg = RunConfig.from_json((out / "config.json").read_text(), "config.json")
    assert cfg.evaluator == "zc:naswot" and not cfg.train_reference
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and (trials["status"] == "ok").all()
    assert trials["accuracy"].between(0, 1, inclusive="neither").all()
    reward = Reward(cfg.reward, cfg.latency_target_ms, cfg.w)
    assert trials["reward"].tolist() == pytest.approx([reward.scalar(a, ms) for a, ms in
                                                       zip(trials["accuracy"], trials["latency_ms"])])
    summary = (out / "summary.md").read_text()
    assert "zc:naswot score quantile (not an accuracy)" in summary
    assert f"quantile among {CALIBRATION_NETWORKS} random nasbench_macro networks" in summary
    assert "Statistical resolution" not in summary and "accuracy_vs_best" not in summary
    assert (out / "best" / "model.onnx").exists()


def test_nas_show_ties_no_zero_cost_quantile_to_a_test_split(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["search", "--space", "nasbench_macro", "--target", "pixel_cpu", "--controller", "random",
                 "--evaluator", "zc:params", "--trials", "2", "--final-top", "0", "--out", str(out), "--quiet"]) == 0
    capsys.readouterr()
    assert main(["show", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "2 of 2 trials finished" in shown and "accuracy_vs_best" not in shown


def test_a_supernet_epoch_is_named_after_an_at_sign(supernet_dir):
    # the weights of a kept epoch score the candidate; the spec stored names the epoch
    spec = f"supernet:{supernet_dir}@1"
    assert evaluator(spec).check("mnv3_small", 10, 16) == spec
    row = evaluate_candidate(job_for("mnv3_small", spec, resolution=16, train_subset=48))
    assert row["status"] == "ok", row["reason"]
    assert row["accuracy"] == evaluate_candidate(job_for("mnv3_small", f"supernet:{supernet_dir}", resolution=16,
                                                         train_subset=48))["accuracy"]  # 1 is its last epoch
    with pytest.raises(UserError, match="keeps no weights of epoch 2 \\(it keeps epochs 1\\)"):
        evaluator(f"supernet:{supernet_dir}@2").check("mnv3_small", 10, 16)
    with pytest.raises(UserError, match="the epoch after '@' must be a positive whole number, got 'last'"):
        evaluator(f"supernet:{supernet_dir}@last").check("mnv3_small", 10, 16)
