"""NAS-Bench-Macro as packaged: the same records as the published JSON, and a canonical form
that groups exactly the codes of one network."""
import json
from pathlib import Path

import numpy as np
import pytest

from nas.benchmarks.nasbench_macro import accuracy, canonical, check_code, distinct, draw, records
from search_spaces.errors import UserError

SHARED_JSON = (Path(__file__).resolve().parents[2] / "shared" / "benchmarks" / "nasbench_macro"
               / "nas-bench-macro_cifar10.json")


def test_packaged_file_equals_the_published_json():
    if not SHARED_JSON.exists():
        pytest.skip(f"published NAS-Bench-Macro JSON not found at {SHARED_JSON}")
    published = json.loads(SHARED_JSON.read_text())
    table = records()
    assert sorted(published) == list(table.index)
    for code, r in published.items():
        row = table.loc[code]
        assert [row.acc_seed0, row.acc_seed1, row.acc_seed2] == r["test_acc"], code
        keys = ["mean_acc", "std", "params", "flops"]
        assert [row[k] for k in keys] == [r[k] for k in keys], code


def test_all_codes_and_the_distinct_networks():
    table = records()
    assert len(table) == 3 ** 8 and table.index.is_unique and table.index[0] == "00000000"
    assert len(distinct()) == 3969 and table.index.map(canonical).nunique() == 3969
    assert canonical("10101110") == "10110110" and canonical("00101202") == "00110220"
    assert canonical("01010010") == "01010010"  # a stage's first layer is kept as is


def test_codes_of_one_network_have_identical_records():
    groups = records().groupby(records().index.map(canonical))
    assert groups.ngroups == 3969
    assert (groups.nunique() == 1).all().all()


@pytest.mark.parametrize("bad", ["1111111", "11111113", "abc", 11111111])
def test_check_code_rejects_bad_codes(bad):
    with pytest.raises(UserError, match="expected 8 characters"):
        check_code(bad)
    with pytest.raises(UserError):
        accuracy(bad)


def test_accuracy_and_draw():
    code = "11111221"
    row = records().loc[code]
    assert accuracy(code, None) == row.mean_acc
    assert [accuracy(code, s) for s in (0, 1, 2)] == [row.acc_seed0, row.acc_seed1, row.acc_seed2]
    with pytest.raises(UserError):
        accuracy(code, 3)
    draws = [draw(code, np.random.default_rng(7)) for _ in range(2)]
    assert draws[0] == draws[1] and draws[0] in {row.acc_seed0, row.acc_seed1, row.acc_seed2}
    rng = np.random.default_rng(0)
    assert {draw(code, rng) for _ in range(50)} == {row.acc_seed0, row.acc_seed1, row.acc_seed2}
