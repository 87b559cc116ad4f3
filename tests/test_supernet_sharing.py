"""`nas supernet train --sharing ofa|spos` (issue 25): which choices of a layer share weights. Under
spos the e3k3 and e6k5 ops of NAS-Bench-Macro keep their own tensors, under ofa the first is a
slice of the second; either mode is saved with the supernet, survives a kill and resume, and an
exported subnet computes what its slice computes. Tiny supernets over digits."""
import json
import random
from dataclasses import replace

import pytest
import torch

from nas.cli import main
from nas.data import flips, load_data
from nas.supernet.directory import EpochNotKept, SupernetDir
from nas.supernet.elastic import named_tensors
from nas.supernet.model import Supernet, covering, placed_blocks, weight_sets
from nas.supernet.scoring import recalibrated_subnet
from search_spaces.anatomy import block_kind
from search_spaces.builder import build_model
from search_spaces.errors import UserError
from search_spaces.ir import Arch
from search_spaces.proxy import for_proxy
from search_spaces.space import SPACES, get_space

SPACE = get_space("nasbench_macro")
TINY = ["--space", "nasbench_macro", "--data", "digits", "--train-subset", "48", "--batch-size", "16",
        "--random-candidates", "1", "--quiet"]
E3K3, E6K5 = [1] * 8, [2] * 8
MIXED = [1, 2, 0, 1, 2, 2, 1, 0]  # identities (a 1x1 projection in stage 1, skipped after), both ops


def own_tensors(model: Supernet) -> int:
    return sum(p.numel() for p in model.parameters())


def storages(model: Supernet, vector) -> set[int]:
    """Where the tensors of the candidate's blocks live."""
    cand = model.candidate(vector)
    shapes = {k: v.shape for k, v in build_model(cand.arch).state_dict().items() if k.startswith("blocks.")}
    return {t.untyped_storage().data_ptr() for t in model.weights(cand, shapes).values()}


def test_spos_gives_each_op_its_own_tensors_ofa_slices_one():
    ofa, spos = Supernet(SPACE, 10, 16, "ofa"), Supernet(SPACE, 10, 16, "spos")
    assert storages(ofa, E3K3) == storages(ofa, E6K5)
    assert not storages(spos, E3K3) & storages(spos, E6K5)
    # spos holds, besides ofa's tensors, one whole e3k3 block per layer
    stem_and_head = sum(p.numel() for n, p in spos.named_parameters() if not n.startswith("stages."))
    e3k3_blocks = sum(p.numel() for p in spos.subnet(spos.candidate(E3K3)).parameters()) - stem_and_head
    assert own_tensors(spos) - own_tensors(ofa) == e3k3_blocks
    assert list(spos.stages[1][0]) == ["conv_k1", "mbconv_e3_k3", "mbconv_e6_k5"]
    assert list(ofa.stages[1][0]) == ["conv", "mbconv"]


@pytest.mark.parametrize("name", sorted(SPACES))
def test_the_weight_sets_come_from_the_spaces_own_description(name):
    space = get_space(name)
    # grouped by block kind, the enumerated blocks are the space's own slots (ofa's sets)
    by_kind = [[{} for _ in stage] for stage in space.slots()]
    for (s, i), b in placed_blocks(space):
        layer, kind = by_kind[s][i], block_kind(b)
        layer[kind] = covering(layer[kind], b) if kind in layer else b

    def switches_off(sets):  # activations and skips have no weights
        return [[{k: replace(b, act="relu", residual=False) for k, b in layer.items()} for layer in stage]
                for stage in sets]

    assert switches_off(by_kind) == switches_off(weight_sets(space, "ofa"))
    # under spos every set serves one op, at its largest
    for stage in weight_sets(space, "spos"):
        for layer in stage:
            assert len({(block_kind(b), b.kernel) + ((b.mid / b.in_,) if block_kind(b) == "mbconv" else ())
                        for b in layer.values()}) == len(layer)


@pytest.mark.parametrize("name", ["nasbench_macro", "mnv3_small"])
def test_a_spos_slice_and_its_subnet_compute_the_same(name):
    space = get_space(name)
    torch.manual_seed(0)
    model = Supernet(space, 10, 16, "spos")
    with torch.no_grad():  # random statistics too: a slice taken from the wrong place changes the output
        for key, t in named_tensors(model).items():
            if t.is_floating_point():
                t.copy_(torch.rand_like(t) + 0.5 if "running_var" in key else torch.randn_like(t) * 0.3)
    model.eval()
    rng = random.Random(1)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        for cand in [model.extreme(max), model.extreme(min)] + [model.candidate(space.sample(rng)) for _ in range(4)]:
            assert torch.allclose(model.subnet(cand).eval()(x), model(x, cand), atol=1e-5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{sharing: a supernet trained without interruption} (spos 2 epochs, ofa 1)."""
    root = tmp_path_factory.mktemp("supernets")
    for sharing, epochs in (("spos", "2"), ("ofa", "1")):
        assert main(["supernet", "train", *TINY, "--sharing", sharing, "--epochs", epochs,
                     "--out", str(root / sharing)]) == 0
    return {s: root / s for s in ("spos", "ofa")}


def test_a_killed_spos_training_resumes_in_spos_to_the_same_weights(trained, tmp_path, killed_after_one_epoch):
    out = tmp_path / "sn"
    assert killed_after_one_epoch(["supernet", "train", *TINY, "--sharing", "spos", "--epochs", "2",
                                   "--out", str(out)]) == 130
    assert SupernetDir(out).state()["epoch"] == 1 and SupernetDir(out).config().sharing == "spos"
    assert main(["supernet", "train", "--resume", str(out), "--quiet"]) == 0
    resumed, straight = SupernetDir(out).state(), SupernetDir(trained["spos"]).state()
    assert resumed["epoch"] == straight["epoch"] == 2
    assert "stages.1.0.mbconv_e3_k3.dw.0.weight" in resumed["model"]
    for k, v in straight["model"].items():
        assert torch.equal(resumed["model"][k], v), k
    # the weights alone after epochs 1 and 2 (powers of two), as an uninterrupted run keeps them
    assert SupernetDir(out).saved_epochs() == [1, 2]
    for epoch in (1, 2):
        kept = torch.load(SupernetDir(out).snapshot(epoch), weights_only=True)
        for k, v in torch.load(SupernetDir(trained["spos"]).snapshot(epoch), weights_only=True).items():
            assert torch.equal(kept[k], v), (epoch, k)
    assert all(torch.equal(kept[k], v) for k, v in straight["model"].items())


@pytest.mark.parametrize("sharing", ["ofa", "spos"])
def test_an_exported_subnet_is_its_slice(trained, sharing, tmp_path, capsys):
    sdir = trained[sharing]
    arch = SPACE.decode(MIXED)
    out = tmp_path / "export"
    assert main(["supernet", "export", str(sdir), arch.to_string(), "--out", str(out)]) == 0
    assert f"{sharing} sharing" in capsys.readouterr().out
    assert json.loads((out / "supernet.json").read_text())["sharing"] == sharing
    model, cfg = SupernetDir(sdir).trained()
    net = build_model(for_proxy(Arch.from_json((out / "arch.json").read_text()), cfg.resolution))
    net.load_state_dict(torch.load(out / "model.pt", weights_only=True))
    cand = model.candidate(MIXED)
    data = load_data(cfg.data, resolution=cfg.resolution, train_subset=cfg.train_subset, seed=cfg.seed)
    recalibrated_subnet(model, cand, data, flips(cfg.data), cfg.seed)  # what export did to its slice
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(net.eval()(x), model(x, cand), atol=1e-5)


def test_a_supernet_saved_before_the_option_is_ofa(trained, tmp_path):
    doc = json.loads((trained["ofa"] / "supernet.json").read_text())
    older = tmp_path / "older"
    older.mkdir()
    (older / "supernet.json").write_text(json.dumps({k: v for k, v in doc.items() if k != "sharing"}))
    (older / "state.pt").write_bytes((trained["ofa"] / "state.pt").read_bytes())
    model, cfg = SupernetDir(older).trained()
    assert cfg.sharing == model.sharing == "ofa" and SupernetDir(older).saved_epochs() == [1]


def test_an_epoch_without_weights_is_refused(trained):
    # EpochNotKept, a UserError: one line at the CLI, and a script listing epochs of a training that
    # moves on beside it can tell this case from any other failure
    with pytest.raises(EpochNotKept, match="keeps no weights of epoch 3 \\(it keeps epochs 1, 2\\)"):
        SupernetDir(trained["spos"]).trained(3)


def test_a_bad_sharing_is_one_line(tmp_path, capsys):
    out = tmp_path / "sn"
    assert main(["supernet", "train", *TINY, "--sharing", "both", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "argument --sharing: invalid choice: 'both'" in err and not out.exists()


def test_a_bad_sharing_in_the_settings_file_is_refused(trained, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    doc = json.loads((trained["ofa"] / "supernet.json").read_text())
    (bad / "supernet.json").write_text(json.dumps(doc | {"sharing": "all"}))
    with pytest.raises(UserError, match="--sharing must be one of ofa, spos, got 'all'"):
        SupernetDir(bad).config()


def test_spos_trains_one_uniform_candidate_per_step_ofa_the_sandwich(tmp_path, monkeypatch):
    """SPOS's own training: one candidate drawn uniformly per step, on the labels; the sandwich
    rule trains the largest, the smallest and --random-candidates (1 here) more per step."""
    calls = []
    forward = Supernet.forward
    monkeypatch.setattr(Supernet, "forward", lambda self, x, cand: calls.append(cand) or forward(self, x, cand))
    per_sharing = {}
    for sharing in ("spos", "ofa"):
        calls.clear()
        assert main(["supernet", "train", *TINY, "--sharing", sharing, "--epochs", "1",
                     "--out", str(tmp_path / sharing)]) == 0
        per_sharing[sharing] = len(calls)
    assert SupernetDir(tmp_path / "spos").config().sampling == "uniform"
    assert SupernetDir(tmp_path / "ofa").config().sampling == "sandwich"
    assert per_sharing["ofa"] == 3 * per_sharing["spos"] > 0
    # either sampling goes with either sharing when asked for
    assert main(["supernet", "train", *TINY, "--sharing", "spos", "--sampling", "sandwich", "--epochs", "1",
                 "--out", str(tmp_path / "spos-sandwich")]) == 0
    assert SupernetDir(tmp_path / "spos-sandwich").config().sampling == "sandwich"


def test_a_supernet_saved_before_sampling_was_an_option_trained_the_sandwich(trained, tmp_path):
    doc = json.loads((trained["spos"] / "supernet.json").read_text())
    older = tmp_path / "older"
    older.mkdir()
    (older / "supernet.json").write_text(json.dumps({k: v for k, v in doc.items() if k != "sampling"}))
    assert SupernetDir(older).config().sampling == "sandwich"
    (older / "supernet.json").write_text(json.dumps(doc | {"sampling": "both"}))
    with pytest.raises(UserError, match="--sampling must be one of sandwich, uniform, got 'both'"):
        SupernetDir(older).config()
