"""Paths typed relative to where the user stands: a search, its extension, `nas train` and
`netadapt refine` each work from a temporary working directory and write where asked."""
import json
import re
import sys
from pathlib import Path

import pandas as pd
import pytest

from nas.cli import main as nas
from netadapt.cli import main as netadapt

TINY = ["--evaluator", "train", "--steps", "1", "--train-subset", "64", "--resolution", "16", "--batch-size", "32", "--quiet"]


def test_relative_run_dir_search_extend_train_refine(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert nas(["search", "--out", "rel", "--trials", "2", "--controller", "random", *TINY]) == 0
    assert (tmp_path / "rel/best/model.pt").is_file() and (tmp_path / "rel/summary.md").is_file()

    assert nas(["search", "--resume", "rel", "--trials", "3", "--quiet"]) == 0  # the user extends the search
    assert pd.read_csv(tmp_path / "rel/trials.csv")["trial"].tolist() == [0, 1, 2]
    assert json.loads((tmp_path / "rel/config.json").read_text())["trials"] == 3

    assert nas(["train", "rel", "--top", "1", "--epochs", "0.05", "--quiet"]) == 0
    assert (tmp_path / "rel/final/1/model.pt").is_file()

    # a budget above the winner's latency: no trimming, but the winner is read and every output written
    assert netadapt(["refine", "rel", "--out", "na", "--target-latency", "10000", "--long-term-epochs", "0",
                     "--threads", "1", "--no-progress"]) == 0
    result = json.loads((tmp_path / "na/result.json").read_text())
    assert result["source"] == str(tmp_path / "rel/final/1") and (tmp_path / "na/model.onnx").is_file()


ROOT = Path(__file__).resolve().parents[1]
#: an absolute path of a machine: /work, /home, /tmp, /root (not inside a longer name or a URL's path), or C:\
MACHINE_PATH = re.compile(r"(?<![\w./-])/(?:work|home|tmp|root)(?![\w.-])|\b[A-Za-z]:\\")


def test_committed_results_name_no_machine_paths():
    """Results are read on other machines: every file under experiments/results/ names paths relative
    to the repository (binary files, the plots, are skipped)."""
    files = [f for f in sorted((ROOT / "experiments" / "results").rglob("*")) if f.is_file()]
    assert files
    found = []
    for f in files:
        data = f.read_bytes()
        if b"\0" in data:
            continue
        for number, line in enumerate(data.decode("utf-8", errors="replace").splitlines(), 1):
            if MACHINE_PATH.search(line):
                found.append(f"{f.relative_to(ROOT)}:{number}: {MACHINE_PATH.search(line).group()}")
    assert not found, "\n".join(found)


def test_results_writers_show_paths_relative_to_the_repository():
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        from results_paths import shown
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    assert shown(ROOT / "latency_tables" / "data" / "pixel_cpu_mnv3.csv") == "latency_tables/data/pixel_cpu_mnv3.csv"
    assert shown(str(ROOT.parent / "shared" / "gt" / "cifar10_18ep.csv")) == "../shared/gt/cifar10_18ep.csv"
    assert shown(f"cifar10:{ROOT.parent / 'shared' / 'data'}") == "cifar10:../shared/data"
    for name in ("digits", "local_cpu", "pixel_cpu", "cifar10:../shared/data", "2000", "--data"):
        assert shown(name) == name
    assert not MACHINE_PATH.search(shown("/tmp/x/t.csv"))


def test_a_path_in_the_home_directory_outside_the_repository_is_shown_from_home(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "experiments"))
    try:
        from results_paths import shown
    finally:
        sys.path.remove(str(ROOT / "experiments"))
    monkeypatch.setenv("HOME", str(tmp_path / "me"))
    cache = tmp_path / "me" / ".cache" / "hw-nas" / "sn"
    if ROOT.is_relative_to(tmp_path / "me"):
        pytest.skip("the repository lies in the home directory")
    assert shown(cache) == "~/.cache/hw-nas/sn" and not MACHINE_PATH.search(shown(cache))


@pytest.mark.parametrize("line, absolute", [
    ("from /work/shared/gt/cifar10_18ep.csv;", True), ("`/tmp/pf`", True), ("cifar10:/home/me/data", True),
    (r"C:\Users\me\t.csv", True), ("/root", True),
    ("../shared/gt/cifar10_18ep.csv", False), ("experiments/runs/tmp/x", False), ("https://x.org/home/a", False),
    ("latency_tables/data/pixel_cpu_mnv3.csv", False), ("a /workers b", False)])
def test_what_counts_as_a_machine_path(line, absolute):
    assert bool(MACHINE_PATH.search(line)) == absolute
