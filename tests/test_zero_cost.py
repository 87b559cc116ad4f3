"""Zero-cost proxies (nas/zero_cost.py): hand-made cases with known answers, and every
registered score on a small network from the project's builder."""
import math

import pytest
import torch
from torch import nn

from nas import zero_cost
from nas.zero_cost import SCORES, score_arch
from search_spaces.builder import build_model
from search_spaces.counting import count
from search_spaces.errors import UserError
from search_spaces.proxy import for_proxy
from search_spaces.references import reference


def labelled(x, n_classes=3):
    return [(x, torch.arange(x.shape[0]) % n_classes)]


# ---- NASWOT --------------------------------------------------------------------------
def test_naswot_identical_inputs_give_a_singular_kernel():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU())
    x = torch.randn(1, 3).repeat(2, 1)
    # K = N_A * ones(2, 2): rank 1, det exactly 0, so slogdet's log-magnitude is -inf
    assert zero_cost.naswot(model, labelled(x), 3) == -math.inf


def test_naswot_complementary_codes_give_a_diagonal_kernel():
    # x2 = -x1: every unit of every layer is active for exactly one of the two inputs, so the
    # Hamming distance is N_A = 3 layers x 3 units, K = diag(9, 9) and log det K = 2 log 9
    model = nn.Sequential(nn.ReLU(inplace=True), nn.ReLU6(), nn.Hardswish())
    x = torch.tensor([[1.0, -2.0, 3.0], [-1.0, 2.0, -3.0]])
    assert zero_cost.naswot(model, labelled(x), 3) == pytest.approx(2 * math.log(9))
    assert torch.equal(x, torch.tensor([[1.0, -2.0, 3.0], [-1.0, 2.0, -3.0]]))  # caller's batch kept


def test_naswot_kernel_is_units_minus_hamming_distance():
    # codes 10, 11, 00 over N_A = 2 units: K = [[2,1,1],[1,2,0],[1,0,2]], det = 4
    x = torch.tensor([[1.0, -1.0], [1.0, 1.0], [-1.0, -1.0]])
    assert zero_cost.naswot(nn.Sequential(nn.ReLU()), labelled(x), 3) == pytest.approx(math.log(4))


# ---- SynFlow, SNIP, gradient norm -----------------------------------------------------
def test_synflow_of_a_two_layer_linear_network_is_its_closed_form():
    # R = 1^T |W2| |W1| 1 = sum over paths of |w1||w2|; R is linear in each layer's weights,
    # so sum_theta theta dR/dtheta = R per layer (Euler), 2R over both layers
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 5, bias=False), nn.Linear(5, 3, bias=False))
    w1, w2 = (model[0].weight.detach().double(), model[1].weight.detach().double())
    expected = 2 * float((w2.abs() @ w1.abs()).sum())
    assert zero_cost.synflow(model, labelled(torch.randn(6, 4)), 3) == pytest.approx(expected, rel=1e-12)


def _linear_case():
    torch.manual_seed(1)
    layer = nn.Linear(5, 3)
    x, y = torch.randn(4, 5), torch.tensor([0, 2, 1, 2])
    w, b = layer.weight.detach().double(), layer.bias.detach().double()
    p = torch.softmax(x.double() @ w.T + b, dim=1)
    grad = (p - nn.functional.one_hot(y, 3).double()).T @ x.double() / x.shape[0]  # dCE/dW, mean over batch
    return layer, [(x, y)], w, grad


def test_snip_on_a_linear_layer_matches_the_hand_gradient():
    layer, batches, w, grad = _linear_case()
    assert zero_cost.snip(layer, batches, 3) == pytest.approx(float((grad * w).abs().sum()), rel=1e-5)


def test_grad_norm_on_a_linear_layer_matches_the_hand_gradient():
    layer, batches, w, grad = _linear_case()
    assert zero_cost.grad_norm(layer, batches, 3) == pytest.approx(float(grad.norm()), rel=1e-5)


def test_zico_on_a_linear_layer_matches_the_hand_gradients():
    torch.manual_seed(2)
    layer = nn.Linear(4, 3)
    batches = [(torch.randn(5, 4), torch.tensor([0, 1, 2, 0, 1])) for _ in range(2)]
    w, b = layer.weight.detach().double(), layer.bias.detach().double()
    g = []
    for x, y in batches:  # per-batch gradients, not accumulated
        p = torch.softmax(x.double() @ w.T + b, dim=1)
        g.append((p - nn.functional.one_hot(y, 3).double()).T @ x.double() / x.shape[0])
    mean, std = (g[0].abs() + g[1].abs()) / 2, (g[0] - g[1]).abs() / 2  # std over 2 batches, ddof 0
    expected = math.log(float((mean / std).sum()))
    assert zero_cost.zico(layer, batches, 3) == pytest.approx(expected, rel=1e-4)


# ---- Jacobian covariance ---------------------------------------------------------------
def test_jacob_cov_of_a_linear_network_has_one_eigenvalue_n():
    # y = Wx: every sample's Jacobian is 1^T W, the correlation matrix is all ones,
    # eigenvalues n and n-1 zeros
    torch.manual_seed(3)
    n, k = 6, 1e-5
    model = nn.Sequential(nn.Linear(7, 4, bias=False))
    expected = -(math.log(n + k) + 1 / (n + k) + (n - 1) * (math.log(k) + 1 / k))
    assert zero_cost.jacob_cov(model, labelled(torch.randn(n, 7)), 3) == pytest.approx(expected, rel=1e-6)


# ---- every score on a network from the builder -----------------------------------------
@pytest.fixture(scope="module")
def small():
    arch = for_proxy(reference("mobilenet_v3_small").replace(resolution=32, num_classes=10), 16)
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, 10, (4,), generator=g))
               for _ in range(2)]
    return arch, batches


def test_every_score_is_finite_and_leaves_the_model_unchanged(small):
    arch, batches = small
    torch.manual_seed(0)
    model = build_model(arch)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for name, s in SCORES.items():
        value = s(arch) if s.needs == "arch" else s(model, batches, arch.num_classes)
        assert isinstance(value, float) and math.isfinite(value), name
        assert s.description and s.name == name
        after = model.state_dict()
        assert all(torch.equal(before[k], after[k]) for k in before), name
        assert all(p.grad is None for p in model.parameters()), name
    assert model.training


def test_score_arch_builds_with_the_seed_and_counts_from_the_ir(small):
    arch, batches = small
    assert score_arch("params", arch, batches) == count(arch)["params"]
    assert score_arch("flops", arch, []) == count(arch)["macs"]
    state = torch.random.get_rng_state()
    a, b = score_arch("naswot", arch, batches, seed=1), score_arch("naswot", arch, batches, seed=1)
    assert a == b and math.isfinite(a)
    assert torch.equal(state, torch.random.get_rng_state())  # the caller's RNG is untouched


def test_unknown_score_is_a_user_error_listing_the_known_names(small):
    arch, batches = small
    with pytest.raises(UserError) as e:
        score_arch("synflw", arch, batches)
    msg = str(e.value)
    assert "\n" not in msg and "synflw" in msg and all(name in msg for name in SCORES)
