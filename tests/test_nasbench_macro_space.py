"""The `nasbench_macro` space is NAS-Bench-Macro's networks exactly, and the product works on it:
counting, round trips, latency tables at 32 px, every controller, a benchmark-scored search."""
import itertools
import json
import random

import numpy as np
import pandas as pd
import pytest
import torch

from latency_tables import load_target
from latency_tables.table import LatencyTable, new_metadata
from module_counts import count_params
from nas.benchmarks.nasbench_macro import canonical, records
from nas.cli import main
from nas.controllers import CONTROLLERS, make_controller
from search_spaces.builder import build_model
from search_spaces.counting import count
from search_spaces.errors import UserError
from search_spaces.ir import Arch
from search_spaces.space import get_space

SPACE = get_space("nasbench_macro")
CODES = ["".join(c) for c in itertools.product("012", repeat=8)]


def vector(code: str) -> list[int]:
    return [int(c) for c in code]


def test_counted_params_and_macs_equal_the_benchmark_for_every_code():
    rec = records()
    assert len(rec) == len(CODES) == 6561
    for code in CODES:
        sizes = count(SPACE.decode(vector(code)))
        assert (sizes["params"], sizes["macs"]) == (rec.at[code, "params"], rec.at[code, "flops"]), code


def test_built_models_have_the_benchmarks_parameter_counts():
    rng = random.Random(0)
    for code in ["00000000", "22212220", "11111111"] + rng.sample(CODES, 5):
        model = build_model(SPACE.decode(vector(code)))
        assert count_params(model) == records().at[code, "params"]
        assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_codes_vectors_and_ir_round_trip_and_one_network_has_one_ir():
    networks: dict[str, set] = {}
    for code in CODES:
        arch = SPACE.decode(vector(code))
        assert Arch.from_string(arch.to_string()) == arch
        encoded = "".join(map(str, SPACE.encode(arch)))
        assert encoded == canonical(code)  # the space's canonical vector is the benchmark's canonical code
        assert SPACE.decode(vector(encoded)) == arch
        networks.setdefault(canonical(code), set()).add(arch.to_string())
    assert len(networks) == 3969 and all(len(irs) == 1 for irs in networks.values())
    # the encode of a built network gives a code of the same network
    net = build_model(SPACE.decode(vector("20112100")))
    assert canonical("20112100") == "".join(map(str, SPACE.encode(net.arch)))


def test_the_downsampling_identity_is_a_linear_projection():
    arch = SPACE.decode([0] * 8)
    assert [(b.op, b.kernel, b.stride, b.act) for b in arch.blocks] == [("conv", 1, 2, "none")] * 3
    assert "conv:i32_o64_m64_k1_s2_none" in arch.to_string()
    with pytest.raises(UserError, match="cannot read token 'none'"):  # only a block may be linear
        Arch.from_string(arch.to_string().replace("stem:c32_k3_s1_relu", "stem:c32_k3_s1_none"))


@pytest.mark.parametrize("name", sorted(CONTROLLERS))
def test_every_controller_proposes_valid_vectors_of_the_layerwise_space(name):
    controller = make_controller(name, SPACE, seed=1, n_objectives=2 if name == "nsga2" else 1)
    for i in range(40):
        v = controller.ask(str(i))
        assert len(v) == 8 and all(isinstance(x, int) and 0 <= x < 3 for x in v)
        SPACE.decode(v)
        acc = records().at["".join(map(str, v)), "mean_acc"]
        controller.tell(str(i), v, (acc, -1.0) if name == "nsga2" else (acc,))


def test_pixel_table_predicts_32px_networks_alike_one_by_one_and_vectorized():
    table = load_target("pixel_cpu")
    codes = ["00000000", "11111111", "22222222", "12121212"]
    fast = table.predict_many(np.array([vector(c) for c in codes]), space=SPACE)
    slow = [table.query_total(SPACE.decode(vector(c))) for c in codes]
    assert fast == pytest.approx(slow) and min(fast) > 0
    assert list(np.argsort(fast)) == [0, 1, 3, 2]


def test_a_224px_end_to_end_term_is_not_used_at_32px():
    """A measured table's term of 224 px (a negative offset) would give 32-px networks negative times:
    at another resolution the table needs its own term, else it refuses."""
    meta = new_metadata("box", "mnv3", 224, 1)
    meta["network_term"] = {"scale": 1.0, "per_input_melem_ms": 0.0, "per_mmac_ms": 0.0, "offset_ms": -0.8,
                            "calibrated": True}
    arch = SPACE.decode(vector("00000000"))
    from latency_tables.ops import arch_ops
    rows = [{"key": op.key, "kind": op.kind, "hw": op.hw, "cin": op.cin, "median_ms": 0.05, "source": "measured"}
            for _, op in arch_ops(arch)]
    table = LatencyTable(rows, meta)
    table.metadata["op_model"] = {"stub": True}  # answers at any resolution (as pixel_cpu does)
    with pytest.raises(UserError, match="end-to-end term for 224 px networks only"):
        table.query_total(arch)
    table.set_term(32, {"scale": 1.0, "per_input_melem_ms": 0.0, "per_mmac_ms": 0.0, "offset_ms": 0.1,
                        "calibrated": True})
    assert table.query_total(arch) == pytest.approx(0.05 * len(rows) + 0.1)
    assert table.term_at(224)["offset_ms"] == -0.8


@pytest.mark.parametrize("controller", sorted(CONTROLLERS))
def test_a_benchmark_scored_search_runs_end_to_end(controller, tmp_path):
    out = tmp_path / "run"
    reward = ["--reward", "pareto"] if controller == "nsga2" else []
    assert main(["search", "--space", "nasbench_macro", "--target", "pixel_cpu", "--controller", controller,
                 "--evaluator", "benchmark:nasbench_macro", "--trials", "6", "--out", str(out), "--quiet",
                 *reward]) == 0
    trials = pd.read_csv(out / "trials.csv")
    assert (trials["status"] == "ok").all() and len(trials) == 6
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["deploy_resolution"] == 32 and "median of" in cfg["latency_target_from"]
    rec = records()
    for row in trials.itertuples():
        code = "".join(map(str, json.loads(row.vector)))
        seeds = [rec.at[code, f"acc_seed{s}"] / 100 for s in range(3)]
        assert min(abs(row.accuracy - a) for a in seeds) < 1e-9  # one training seed's accuracy
        assert row.latency_ms <= cfg["latency_window_ms"][1] + 1e-9
    assert "NAS-Bench-Macro" in (out / "summary.md").read_text()


def test_the_mean_option_and_bad_benchmark_specs(tmp_path):
    out = tmp_path / "run"
    assert main(["search", "--space", "nasbench_macro", "--target", "pixel_cpu", "--controller", "random",
                 "--evaluator", "benchmark:nasbench_macro:mean", "--trials", "3", "--out", str(out), "--quiet"]) == 0
    for row in pd.read_csv(out / "trials.csv").itertuples():
        code = "".join(map(str, json.loads(row.vector)))
        assert row.accuracy == pytest.approx(records().at[code, "mean_acc"] / 100)

def test_bad_benchmark_specs_are_one_line(tmp_path, capsys):
    for space, spec, message in [("nasbench_macro", "benchmark:nasbench_101", "unknown benchmark"),
                                 ("nasbench_macro", "benchmark:nasbench_macro:best", ":mean"),
                                 ("nasbench_macro", "oracle", "unknown evaluator"),
                                 ("mnv3", "benchmark:nasbench_macro", "holds networks of space nasbench_macro")]:
        assert main(["search", "--space", space, "--target", "pixel_cpu", "--evaluator", spec,
                     "--out", str(tmp_path / spec.replace(":", "_")), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err
