"""Paths typed relative to where the user stands: a search, its extension, `nas train` and
`netadapt refine` each work from a temporary working directory and write where asked."""
import json

import pandas as pd

from nas.cli import main as nas
from netadapt.cli import main as netadapt

TINY = ["--steps", "1", "--train-subset", "64", "--resolution", "16", "--batch-size", "32", "--quiet"]


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
