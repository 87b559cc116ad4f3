"""The weight-sharing supernet: exact slices, importance sort, train / interrupt / resume, export,
scoring, and a supernet-scored search end to end, on a tiny supernet over digits."""
import json
import random

import pandas as pd
import pytest
import torch

from nas.cli import main
from nas.run_config import RunConfig
from nas.supernet.directory import SupernetDir
from nas.supernet.elastic import named_tensors, sort_channels
from nas.supernet.model import Supernet
from nas.supernet.scoring import recalibrated_subnet, score
from nas.supernet.training import flips
from nas.data import load_data
from search_spaces.builder import build_model
from search_spaces.errors import UserError
from search_spaces.ir import Arch
from search_spaces.proxy import for_proxy
from search_spaces.space import STAGE_DECISIONS, get_space

SPACE = get_space("mnv3_small")
TINY = ["--space", "mnv3_small", "--data", "digits", "--train-subset", "48", "--batch-size", "16",
        "--random-candidates", "1", "--quiet"]


def scrambled_supernet(seed=0) -> Supernet:
    """A supernet whose every tensor (BatchNorm statistics included) is random, so a slice taken
    from the wrong place changes the output."""
    torch.manual_seed(seed)
    model = Supernet(SPACE, 10, 16)
    with torch.no_grad():
        for name, t in named_tensors(model).items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in name else torch.randn_like(t) * 0.3)
    return model.eval()


def test_a_slice_and_its_exported_subnet_compute_the_same():
    model = scrambled_supernet()
    rng = random.Random(1)
    cands = [model.extreme(max), model.extreme(min)] + [model.candidate(SPACE.sample(rng)) for _ in range(8)]
    # every choice of every kind of decision (op, kernel, SE, activation, skip, width, depth) is exercised
    covered = {(d.name.split(".")[1], d.choices[v]) for c in cands for d, v in zip(SPACE.decisions(), c.vector)}
    offered = {(d.name.split(".")[1], choice) for d in SPACE.decisions() for choice in d.choices}
    assert covered == offered and {name for name, _ in covered} == set(STAGE_DECISIONS)
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        for cand in cands:
            expected = model(x, cand)
            assert torch.allclose(model.subnet(cand).eval()(x), expected, atol=1e-5)
            # the subnet is the builder's own network for the candidate's proxy IR
            assert model.subnet(cand).arch == for_proxy(SPACE.decode(list(cand.vector)).replace(num_classes=10), 16)
    largest, smallest = (sum(p.numel() for p in model.subnet(c).parameters()) for c in cands[:2])
    assert largest > max(sum(p.numel() for p in model.subnet(c).parameters()) for c in cands[2:])
    assert smallest < min(sum(p.numel() for p in model.subnet(c).parameters()) for c in cands[2:])


def test_widths_share_a_prefix_and_kernels_their_centre():
    model = scrambled_supernet()
    sub = model.subnet(model.extreme(min))
    state = named_tensors(model)
    dw = "stages.1.0.dwsep.dw.0.weight"  # the smallest candidate is depthwise-separable, kernel 3
    assert torch.equal(sub.state_dict()["blocks.1.dw.0.weight"], state[dw][:sub.arch.blocks[1].in_, :, 2:5, 2:5])
    # the largest candidate uses every tensor of the stem, the head and the mbconv layers whole
    largest = model.subnet(model.extreme(max)).state_dict()
    whole = {k: v for k, v in state.items() if not k.startswith("stages.") or k.split(".")[3] == "mbconv"}
    assert len(largest) == len(whole)
    for k, v in largest.items():
        assert torch.equal(v, whole[model.supernet_key(model.extreme(max), k)]), k


def test_the_importance_sort_keeps_the_largest_network_and_orders_filters():
    model = scrambled_supernet()
    x = torch.randn(2, 3, 16, 16)
    before = model(x, model.extreme(max))
    sets = list(model.channel_sets())
    sort_channels(model, sets)
    torch.testing.assert_close(model(x, model.extreme(max)), before, atol=1e-5, rtol=1e-5)
    tensors = named_tensors(model)
    for _, makers in sets:
        importance = sum(tensors[k].abs().flatten(1).sum(1) for k in makers)
        assert (importance[:-1] >= importance[1:]).all()
    assert len(sets) > len(SPACE.stages)  # widths and expanded channels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("supernet") / "sn"
    assert main(["supernet", "train", *TINY, "--epochs", "2", "--out", str(out)]) == 0
    return out


def test_an_interrupted_training_resumes_to_the_same_weights(trained, tmp_path, killed_after_one_epoch):
    out = tmp_path / "sn"
    assert killed_after_one_epoch(["supernet", "train", *TINY, "--epochs", "2", "--out", str(out)]) == 130
    assert SupernetDir(out).state()["epoch"] == 1
    assert main(["supernet", "train", "--resume", str(out), "--quiet"]) == 0
    resumed, straight = SupernetDir(out).state(), SupernetDir(trained).state()
    assert resumed["epoch"] == straight["epoch"] == 2
    for k, v in straight["model"].items():
        assert torch.equal(resumed["model"][k], v), k
    history = pd.read_csv(out / "epochs.csv")
    assert history["epoch"].tolist() == [1, 2] and (history["loss"] > 0).all()


def test_training_changes_the_weights_and_keeps_them_finite(trained):
    state = SupernetDir(trained).state()
    fresh = SupernetDir(trained).model(SupernetDir(trained).config()).state_dict()
    assert any(not torch.equal(fresh[k], v) for k, v in state["model"].items() if k.endswith("weight"))
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())


def test_export_writes_the_recalibrated_slice(trained, tmp_path):
    model, cfg = SupernetDir(trained).trained()
    vector = SPACE.sample(random.Random(3))
    arch = SPACE.decode(vector)
    out = tmp_path / "export"
    assert main(["supernet", "export", str(trained), arch.to_string(), "--out", str(out)]) == 0
    exported = Arch.from_json((out / "arch.json").read_text())
    assert exported == arch.replace(num_classes=10)
    net = build_model(for_proxy(exported, cfg.resolution))
    net.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    data = load_data(cfg.data, resolution=cfg.resolution, train_subset=cfg.train_subset, seed=cfg.seed)
    cand = model.candidate(vector)
    recalibrated_subnet(model, cand, data, flips(cfg.data), cfg.seed)
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), model(x, cand), atol=1e-5)
        # recalibration changed the statistics the supernet had stored for this slice
        assert not torch.allclose(net(x), SupernetDir(trained).trained()[0](x, cand), atol=1e-5)
    assert 0 <= json.loads((out / "supernet.json").read_text())["val_accuracy"] <= 1


def test_an_arch_outside_the_space_is_one_line(trained, tmp_path, capsys):
    assert main(["supernet", "export", str(trained), "mobilenet_v2", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not in space mnv3_small" in err


def test_a_supernet_scored_search(trained, tmp_path):
    run = tmp_path / "run"
    assert main(["search", "--space", "mnv3_small", "--evaluator", f"supernet:{trained}", "--controller", "random",
                 "--trials", "3", "--train-subset", "48", "--resolution", "16", "--out", str(run), "--quiet"]) == 0
    cfg = RunConfig.from_json((run / "config.json").read_text(), "config.json")
    assert cfg.evaluator == f"supernet:{trained}"
    trials = pd.read_csv(run / "trials.csv")
    assert len(trials) == 3 and (trials["status"] == "ok").all()
    model, scfg = SupernetDir(trained).trained()
    data = load_data(cfg.data, resolution=16, train_subset=48, seed=0)
    for row in trials.itertuples():  # the accuracy is the slice's, recalibrated, on the search's data
        vector = SPACE.encode(Arch.from_string(row.arch).replace(num_classes=SPACE.num_classes))
        assert row.accuracy == pytest.approx(score(model, model.candidate(vector), data, False, 0)[1])


@pytest.mark.parametrize("evaluator, message", [
    ("supernet:/nonexistent/sn", "supernet settings not found"),
    ("magic", "unknown evaluator 'magic' (known: train, supernet, benchmark"),
])
def test_a_bad_evaluator_is_one_line(evaluator, message, tmp_path, capsys):
    assert main(["search", "--evaluator", evaluator, "--out", str(tmp_path / "run"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not (tmp_path / "run").exists()


def test_a_supernet_of_another_space_is_refused(trained, tmp_path, capsys):
    assert main(["search", "--space", "mnv3", "--evaluator", f"supernet:{trained}", "--resolution", "16",
                 "--out", str(tmp_path / "run"), "--quiet"]) == 2
    assert "trained for space mnv3_small" in capsys.readouterr().err


def test_an_older_config_without_evaluator_still_loads():
    doc = {f: 1 for f in RunConfig.__dataclass_fields__ if f != "evaluator"}
    doc.update(space="mnv3", w=None, exponents=[], train_subset=None, steps=None, versions={}, latency_table={})
    assert RunConfig.from_json(json.dumps(doc), "config.json").evaluator == "train"
    with pytest.raises(UserError, match="evaluator must be"):
        RunConfig.from_json(json.dumps(doc | {"evaluator": None}), "config.json")


@pytest.mark.parametrize("argv, message", [
    (["--epochs", "0"], "--epochs must be positive"),
    (["--random-candidates", "-1"], "--random-candidates must be a whole number"),
    (["--device", "tpu9"], "unknown device"),
    (["--space", "nope"], "unknown search space"),
])
def test_bad_training_input_is_one_line(argv, message, tmp_path, capsys):
    out = tmp_path / "sn"
    assert main(["supernet", "train", *TINY, *argv, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err and not out.exists()


def test_each_step_trains_the_largest_the_smallest_and_random_ones_distilled(tmp_path, monkeypatch):
    import nas.supernet.training as training

    calls, targets = [], []
    forward, kl_div = Supernet.forward, training.F.kl_div

    def recording_forward(self, x, cand):
        out = forward(self, x, cand)
        calls.append((cand.vector, out.detach()))
        return out

    def recording_kl_div(log_probs, target, **kw):
        targets.append(target)
        return kl_div(log_probs, target, **kw)

    monkeypatch.setattr(Supernet, "forward", recording_forward)
    monkeypatch.setattr(training.F, "kl_div", recording_kl_div)
    assert main(["supernet", "train", *TINY, "--epochs", "1", "--out", str(tmp_path / "sn")]) == 0
    model = Supernet(SPACE, 10, 16)
    largest, smallest = model.extreme(max).vector, model.extreme(min).vector
    steps = [calls[i:i + 3] for i in range(0, len(calls), 3)]
    assert len(steps) == 3 and len(targets) == 2 * len(steps)  # 48 images, batches of 16; 2 students each
    for n, ((big, teacher), (small, _), (rand, _)) in enumerate(steps):
        assert big == largest and small == smallest and rand not in (largest, smallest)
        for target in targets[2 * n:2 * n + 2]:  # students learn the largest's soft predictions
            assert torch.allclose(target, teacher.softmax(1))
    assert len({step[2][0] for step in steps}) == len(steps)  # a new random candidate every step
