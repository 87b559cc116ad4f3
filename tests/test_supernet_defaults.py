"""What follows a supernet takes its data and resolution from it (issue 26): a supernet-scored
search with the defaults of both commands, `nas train` after it, and NetAdapt on an exported
subnet; a flag that disagrees with the supernet is one line and exit status 2."""
import json
import random

import pytest

import nas.final_training
from nas.cli import main
from nas.run_config import RunConfig
from netadapt.cli import main as netadapt
from search_spaces.space import get_space

RESOLUTION = 16  # `nas supernet train`'s default for digits (a search's is 8)
SPACE = get_space("mnv3")


@pytest.fixture(scope="module")
def supernet(tmp_path_factory):
    out = tmp_path_factory.mktemp("supernet") / "sn"
    assert main(["supernet", "train", "--space", "mnv3", "--data", "digits", "--epochs", "1", "--train-subset", "16",
                 "--batch-size", "16", "--random-candidates", "0", "--quiet", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def run(supernet, tmp_path_factory):
    out = tmp_path_factory.mktemp("search") / "run"
    assert main(["search", "--space", "mnv3", "--target", "pixel_cpu", "--evaluator", f"supernet:{supernet}",
                 "--controller", "evolution", "--trials", "2", "--workers", "1", "--quiet", "--out", str(out)]) == 0
    return out


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    return err


def test_a_search_takes_the_supernets_resolution_and_data(supernet, run):
    cfg = RunConfig.from_json((run / "config.json").read_text(), "config.json")
    assert (cfg.resolution, cfg.data, cfg.evaluator) == (RESOLUTION, "digits", f"supernet:{supernet}")
    assert (f"resolution {RESOLUTION} px and data digits taken from the supernet"
            in (run / "summary.md").read_text())


@pytest.mark.parametrize("flags, message", [
    (["--resolution", "8"], f"--resolution 8 disagrees with supernet {{sn}}, trained at {RESOLUTION}px"),
    (["--data", "cifar10:/nowhere"], "--data cifar10:/nowhere disagrees with supernet {sn}, trained on digits"),
])
def test_a_search_flag_that_disagrees_with_the_supernet_is_one_line(supernet, tmp_path, capsys, flags, message):
    out = tmp_path / "run"
    assert main(["search", "--space", "mnv3", "--evaluator", f"supernet:{supernet}", "--controller", "evolution",
                 *flags, "--out", str(out), "--quiet"]) == 2
    assert message.format(sn=supernet) in one_line_error(capsys) and not out.exists()


def test_nas_train_retrains_at_the_supernets_resolution(run, monkeypatch):
    loaded = []
    load_data = nas.final_training.load_data

    def recording(spec, **kw):
        loaded.append((spec, kw["resolution"]))
        return load_data(spec, **kw)

    monkeypatch.setattr(nas.final_training, "load_data", recording)
    assert main(["train", str(run), "--top", "1", "--epochs", "0.02", "--device", "cpu", "--quiet"]) == 0
    assert loaded == [("digits", RESOLUTION)]


@pytest.fixture(scope="module")
def exported(supernet, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "subnet"
    arch = SPACE.decode(SPACE.sample(random.Random(3))).to_string()
    assert main(["supernet", "export", str(supernet), arch, "--out", str(out)]) == 0
    return out


def test_export_records_the_supernets_data_and_resolution(exported):
    record = json.loads((exported / "supernet.json").read_text())
    assert {k: record[k] for k in ("data", "resolution", "train_subset", "seed")} == {
        "data": "digits", "resolution": RESOLUTION, "train_subset": 16, "seed": 0}


def test_netadapt_refines_an_exported_subnet_on_its_supernets_data(exported):
    # a budget the subnet already meets: no iteration, only the start's evaluation and the outputs
    assert netadapt(["refine", str(exported), "--target", "pixel_cpu", "--target-latency", "1000",
                     "--long-term-epochs", "0", "--threads", "1", "--device", "cpu", "--no-progress"]) == 0
    state = json.loads((exported / "netadapt" / "state" / "state.json").read_text())
    assert (state["settings"]["data"], state["settings"]["resolution"]) == ("digits", RESOLUTION)
    assert state["source"] == str(exported)
    # the same validation images at the same size as the export's own score
    record = json.loads((exported / "supernet.json").read_text())
    assert state["history"][0]["acc_after_ft"] == record["val_accuracy"]


@pytest.mark.parametrize("flags, message", [
    (["--target", "pixel_cpu", "--data", "cifar10:/nowhere"],
     "--data cifar10:/nowhere disagrees with the subnet exported to {out}, whose supernet was trained on digits"),
    ([], "{out} holds a subnet exported from a supernet, which names no latency target: give --target"),
])
def test_netadapt_flags_that_disagree_with_an_export_are_one_line(exported, tmp_path, capsys, flags, message):
    out = tmp_path / "refined"
    assert netadapt(["refine", str(exported), *flags, "--out", str(out), "--no-progress"]) == 2
    assert message.format(out=exported) in one_line_error(capsys) and not out.exists()


def test_a_search_of_another_seed_scores_on_the_images_the_supernet_held_out(supernet, monkeypatch):
    """The supernet trained on the split of its seed (0): a search with --seed 1 must not validate on
    images of that training split, so its candidates are scored on the supernet's split."""
    import nas.evaluation as evaluation
    from nas.evaluators import evaluator

    job = {"space": "mnv3", "target": "pixel_cpu", "data": "digits", "resolution": RESOLUTION, "deploy_resolution": 224,
           "train_subset": 16, "seed": 1, "epochs": 1, "steps": None, "batch_size": 16, "lr": 0.1,
           "optimizer": "sgd", "threads": 1, "evaluator": f"supernet:{supernet}",
           "vector": SPACE.sample(random.Random(3))}
    assert evaluator(job["evaluator"]).data_seed(job) == 0 and evaluator("train").data_seed(job) == 1
    splits = []
    monkeypatch.setattr(evaluation, "cached_data",
                        lambda spec, resolution, subset, seed, *device: splits.append(seed) or
                        evaluation.load_data(spec, resolution=resolution, train_subset=subset, seed=seed))
    row = evaluation.evaluate_candidate(job)
    assert row["status"] == "ok", row["reason"]
    assert splits and set(splits) == {0}
