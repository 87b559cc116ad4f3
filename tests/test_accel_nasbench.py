"""The `accel_nasbench` space is Accel-NASBench's networks exactly (counts of every record, round
trips, built models), its records load, its surrogate answers the rest, and a benchmark-scored
search runs on it and says where each accuracy came from."""
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from latency_tables import load_target
from latency_tables.targets import DEVICE_TABLES
from module_counts import count_params
from netadapt.surgery import slices, trim, units
from nas.benchmarks import accel_nasbench as anb
from nas.benchmarks.benchmark import BENCHMARKS, get_benchmark
from nas.cli import main
from nas.controllers import CONTROLLERS, make_controller
from nas.evaluators import evaluator
from nas.run_dir import TRIAL_COLUMNS, RunDir
from nas.supernet.elastic import named_tensors
from nas.supernet.model import Supernet
from search_spaces.anatomy import block_parts, has_expand
from search_spaces.builder import build_model
from search_spaces.counting import count, count_many, thop_macs
from search_spaces.errors import UserError
from search_spaces.ir import Arch
from search_spaces.references import reference

SPACE = anb.SPACE


@pytest.fixture(scope="module")
def vectors() -> np.ndarray:
    """The decision vector of every record, in the records' order."""
    return np.array([anb.vector(c) for c in anb.records().index])


def test_the_records_load():
    rec, nets = anb.records(), anb.distinct()
    assert len(rec) == anb.RECORDS == 5138 and len(nets) == rec.index.nunique() == 5125
    twice = nets[nets["trainings"] == 2]
    assert len(twice) == 13 and (nets["trainings"] <= 2).all()
    first = rec.loc[[twice.index[0]], "val_top1"]
    assert twice["val_top1"].iloc[0] == pytest.approx(first.mean())
    assert twice["val_top1_spread"].iloc[0] == pytest.approx(first.max() - first.min())
    costs = anb.device_costs()
    assert list(costs.columns) == [d.name for d in anb.DEVICES] and (costs.fillna(1.0) > 0).all().all()
    assert costs.notna().sum().min() > 5000  # a few networks lack a device's timing
    # a throughput becomes ms per image
    assert costs["a100"].iloc[0] == pytest.approx(1000 / nets["throughput_a100"].iloc[0])


def test_counted_params_and_thop_macs_equal_the_benchmark_for_every_record(vectors):
    rec = anb.records()
    params, macs = count_many(SPACE, vectors)["params"], count_many(SPACE, vectors, thop=True)["macs"]
    assert (params == np.round(rec["params_m"].to_numpy() * 1e6)).all()
    # thop: conv/linear MACs + 4 per BN output element + each pool's (the SE squeeze's too) input + channels
    assert (macs == np.round(rec["macs_m"].to_numpy() * 1e6)).all()
    for i in random.Random(0).sample(range(len(vectors)), 20):  # the vectorised count is the IR's
        arch = SPACE.decode(vectors[i].tolist())
        assert (count(arch)["params"], thop_macs(arch)) == (params[i], macs[i])


def test_codes_vectors_and_ir_round_trip(vectors):
    codes = anb.records().index
    assert all(anb.code(v) == c for v, c in zip(vectors.tolist(), codes))
    for i in random.Random(1).sample(range(len(vectors)), 40):
        v = vectors[i].tolist()
        arch = SPACE.decode(v)
        assert Arch.from_string(arch.to_string()) == arch and Arch.from_json(arch.to_json()) == arch
        assert SPACE.encode(arch) == v
    for bad in ("e6k3l1n", "e2k3l1n-" * 6 + "e2k3l1n", "-".join(["e6k3l4n"] * 7)):
        with pytest.raises(UserError, match="Accel-NASBench code"):
            anb.vector(bad)


def test_the_networks_are_the_readmes():
    """Expansion 1 has no expansion conv; SE squeezes a quarter of the block's input, hard-sigmoid
    gate; stage 5 holds 1-4 layers, the others 1-3; fixed widths, ReLU."""
    arch = SPACE.decode(anb.vector("e1k3l1s-e4k5l2n-e6k3l3s-e1k5l1s-e6k5l2n-e4k3l4s-e6k5l3s"))
    first = arch.blocks[0]
    assert not has_expand(first) and [p.path for p in block_parts(first)] == ["dw", "se", "project"]
    assert [(b.in_, b.se.squeeze, b.se.gate) for b in arch.blocks if b.se][:3] == [
        (32, 8, "hsigmoid"), (24, 6, "hsigmoid"), (40, 10, "hsigmoid")]
    assert [b.out for b in arch.blocks] == [16, 24, 24, 40, 40, 40, 80, 112, 112, 192, 192, 192, 192,
                                            320, 320, 320]
    assert {b.act for b in arch.blocks} == {"relu"} and [d.choices for d in SPACE.decisions()][-1] == (1, 2, 3)
    assert SPACE.stage_options(5)["depth"] == (1, 2, 3, 4)


def test_the_reference_is_efficientnet_b0s_configuration():
    arch = reference(SPACE.reference)
    assert anb.code(SPACE.encode(arch)) == "e1k3l1s-e6k3l2s-e6k5l2s-e6k3l3s-e6k5l3s-e6k5l4s-e6k3l1s"
    assert count(arch)["params"] == 5_288_548  # EfficientNet-B0's (swish and sigmoid have no parameters)


def test_built_models_have_the_benchmarks_parameter_counts(vectors):
    rec = anb.records()
    for i in [0, *random.Random(2).sample(range(len(vectors)), 3)]:
        model = build_model(SPACE.decode(vectors[i].tolist()))
        assert count_params(model) == round(rec["params_m"].iloc[i] * 1e6)
        assert model(torch.zeros(1, 3, 64, 64)).shape == (1, 1000)
    gates = [m for m in model.modules() if isinstance(m, torch.nn.Hardsigmoid)]
    assert len(gates) == sum(b.se is not None for b in model.arch.blocks)


def test_the_surrogate_learns_a_hand_made_accuracy_and_is_deterministic(vectors):
    """Accuracy = 50 + 2 x layers + SE stages: fitted on 800 records, it ranks 400 others alike."""
    values = anb.stage_values(vectors)
    truth = 50 + 2 * values[:, :, 2].sum(1) + values[:, :, 3].sum(1)
    model = anb.Surrogate(vectors[:800], truth[:800])
    guess = model.predict(vectors[800:1200])
    assert stats.kendalltau(guess, truth[800:1200])[0] > 0.9
    assert np.array_equal(guess, anb.Surrogate(vectors[:800], truth[:800]).predict(vectors[800:1200]))


def test_the_benchmark_answers_from_records_else_the_surrogate():
    bench = get_benchmark("accel_nasbench")
    assert set(BENCHMARKS) == {"nasbench_macro", "accel_nasbench"} and bench.space == SPACE.name
    nets = anb.distinct()
    twice = nets.index[nets["trainings"] == 2][0]
    trained = anb.records().loc[[twice], "val_top1"].tolist()
    assert bench.answer(twice, None) == pytest.approx(np.mean(trained))
    rng = np.random.default_rng(0)
    assert {bench.answer(twice, rng) for _ in range(20)} == set(trained)  # one training's, drawn
    unseen = anb.code(SPACE.encode(reference(SPACE.reference)))  # EfficientNet-B0 was not sampled
    assert bench.accuracy_source(unseen) == "surrogate" and bench.accuracy_source(twice) == "record"
    assert bench.answer(unseen, None) == pytest.approx(anb.surrogate().predict([anb.vector(unseen)])[0])
    scorer = evaluator("benchmark:accel_nasbench")
    assert scorer.accuracy_source(anb.vector(twice)) == "record"
    assert "surrogate" in scorer.describe(None)
    assert evaluator("benchmark:nasbench_macro").accuracy_source([0] * 8) == "record"
    with pytest.raises(UserError, match="unknown benchmark 'nope'"):
        get_benchmark("nope")
    with pytest.raises(UserError, match="timed no device 'pixel'"):
        bench.device("pixel")


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_every_controller_proposes_valid_vectors_of_the_space(name):
    controller = make_controller(name, SPACE, seed=1, n_objectives=2 if name == "nsga2" else 1)
    for i in range(12):
        v = controller.ask(str(i))
        arch = SPACE.decode(v)
        acc = count(arch)["params"] / 1e7  # any score that tells networks apart
        controller.tell(str(i), v, (acc, -1.0) if name == "nsga2" else (acc,))


def test_a_benchmark_scored_search_says_where_each_accuracy_came_from(tmp_path):
    out = tmp_path / "run"
    assert main(["search", "--space", "accel_nasbench", "--target", "pixel_cpu", "--controller", "evolution",
                 "--evaluator", "benchmark:accel_nasbench:mean", "--trials", "4", "--out", str(out), "--quiet"]) == 0
    trials = pd.read_csv(out / "trials.csv")
    assert (trials["status"] == "ok").all() and len(trials) == 4
    for row in trials.itertuples():
        code = anb.code(json.loads(row.vector))
        source = "record" if code in anb.records().index else "surrogate"
        assert row.accuracy_source == source
        assert row.accuracy == pytest.approx(get_benchmark("accel_nasbench").answer(code, None) / 100)
    assert "surrogate" in (out / "summary.md").read_text()


@pytest.mark.parametrize("sharing", ["ofa", "spos"])
def test_a_supernet_slice_and_its_subnet_compute_the_same(sharing):
    torch.manual_seed(0)
    model = Supernet(SPACE, 10, 16, sharing)
    with torch.no_grad():  # random statistics too: a slice taken from the wrong place changes the output
        for key, t in named_tensors(model).items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in key else torch.randn_like(t) * 0.3)
    model.eval()
    rng, x = random.Random(1), torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        for cand in [model.extreme(max), model.extreme(min)] + [model.candidate(SPACE.sample(rng)) for _ in range(2)]:
            assert torch.allclose(model.subnet(cand).eval()(x), model(x, cand), atol=1e-4)


def test_a_latency_table_predicts_the_space_alike_one_by_one_and_vectorized(vectors):
    table = load_target("pixel_cpu")
    sample = vectors[:5]
    fast = table.predict_many(sample, space=SPACE)
    assert fast == pytest.approx([table.query_total(SPACE.decode(v.tolist())) for v in sample]) and min(fast) > 0


def test_trials_of_runs_from_before_accuracy_source_still_load(tmp_path):
    run = RunDir(tmp_path)
    rows = pd.DataFrame([{c: None for c in TRIAL_COLUMNS}
                         | {"trial": i, "key": f"k{i}", "arch": "a", "vector": "[0]", "status": "failed",
                            "device": "cpu"}
                         for i in range(2)])
    rows[[c for c in TRIAL_COLUMNS if c != "accuracy_source"]].to_csv(run / "trials.csv", index=False)
    back = run.trials()
    assert list(back.columns) == TRIAL_COLUMNS and back["accuracy_source"].isna().all()
    assert back["device"].tolist() == ["cpu", "cpu"]
    rows.drop(columns="status").to_csv(run / "trials.csv", index=False)  # a column no version lacked
    with pytest.raises(UserError, match="damaged: its header"):
        run.trials()


@pytest.mark.parametrize("device", [d.name for d in anb.DEVICES])
def test_each_device_target_predicts_the_records_timings(device, vectors):
    """The tables experiments/accel_nasbench_targets.py fitted on the records' whole-network timings."""
    assert DEVICE_TABLES[device].is_file()
    table = load_target(device)  # a target by the device's name, as --target zcu102
    assert table.metadata["device"] == device
    measured = anb.device_costs(anb.records())[device].to_numpy()
    rows = [i for i in random.Random(3).sample(range(len(vectors)), 40) if np.isfinite(measured[i])]
    predicted = table.predict_many(vectors[rows], space=SPACE)
    assert np.median(np.abs(predicted / measured[rows] - 1)) < 0.1
    assert stats.kendalltau(predicted, measured[rows])[0] > 0.6


def test_netadapt_removes_channels_of_its_blocks(vectors):
    """Zeroed channels of a width unit and of a mid unit, trimmed away, change no output (the
    EfficientNet SE's squeeze keeps its width)."""
    arch = SPACE.decode(anb.vector("e1k3l1s-e4k5l2s-e6k3l3s-e1k5l1s-e6k5l2n-e4k3l4s-e6k5l3s")).replace(
        num_classes=10, resolution=32)
    torch.manual_seed(0)
    net = build_model(arch).eval()
    with torch.no_grad():
        for name, t in net.state_dict().items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if name.endswith("running_var") else torch.randn_like(t) * 0.3)
    chosen = [next(u for u in units(arch) if u.name.startswith(kind)) for kind in ("width:", "mid:")]
    x = torch.randn(2, 3, 32, 32)
    for unit in chosen:
        drop = torch.arange(8)
        with torch.no_grad():
            state = net.state_dict()
            for key, axis in slices(arch, unit):
                if "running" not in key:
                    state[key].index_fill_(axis, drop, 0.0)
            before = net(x)
            small = trim(net, unit, unit.width - 8).eval()
            torch.testing.assert_close(small(x), before, atol=1e-4, rtol=1e-4)
        assert [b.se.squeeze for b in small.arch.blocks if b.se] == [b.se.squeeze for b in arch.blocks if b.se]
