"""Zero-cost proxies: scores of an untrained network that predict its trained accuracy.

Each model score is `score(model, batches, num_classes) -> float` (higher = predicted
better); `batches` is a list of (x, y) tensors and all but ZiCo read only the first. Every
score works on a deep copy of the model, so its weights and BN statistics are left as they
were. Models run in train mode (batch statistics in BN) as the papers' code does, except
SynFlow (eval mode, see there). Where the papers leave a detail open, the choice is that of
the authors' public code, said in a comment. `flops` and `params` read only the IR.

`SCORES` is the registry; `score_arch(name, arch, batches, seed)` builds the network and scores it.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from search_spaces.builder import GlobalPool, build_model
from search_spaces.counting import count
from search_spaces.errors import UserError
from search_spaces.ir import Arch

Batches = list[tuple[torch.Tensor, torch.Tensor]]
RELU_FAMILY = (nn.ReLU, nn.ReLU6, nn.Hardswish)  # the builder's activations (search_spaces/builder.py)


def _copy(model: nn.Module, train: bool = True) -> nn.Module:
    m = copy.deepcopy(model)
    m.train(train)
    m.zero_grad(set_to_none=True)
    return m


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _batch(batches: Batches, model: nn.Module, i: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = batches[i]
    dev = _device(model)
    return x.to(dev).clone(), y.to(dev)  # clone: an in-place first layer must not touch the caller's data


def _weights(model: nn.Module) -> list[nn.Parameter]:
    """Conv and linear weights: the parameters the pruning-based scores sum over (zero-cost-nas's
    `get_layer_metric_array`, and Synaptic-Flow's prunable set): no biases, no BN affine."""
    return [m.weight for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def _ce_grads(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> list[torch.Tensor]:
    """Gradients of the mean cross-entropy of one batch wrt `_weights(model)` (zeros when unused)."""
    model.zero_grad(set_to_none=True)
    F.cross_entropy(model(x), y).backward()
    return [w.grad if w.grad is not None else torch.zeros_like(w) for w in _weights(model)]


# ---- the scores ----------------------------------------------------------------------
def naswot(model: nn.Module, batches: Batches, num_classes: int) -> float:
    """NASWOT, Mellor et al., "Neural Architecture Search without Training", ICML 2021.

    Each input's binary code is whether each ReLU-family unit (ReLU, ReLU6, Hardswish) is
    active (> 0); K = sum over activation layers of C C^T + (1-C)(1-C)^T, i.e. N_A minus the
    Hamming distances of the codes; score = log|det K|. As in the public code, the codes come
    from a forward hook on each activation module (the code reads the input > 0 of ReLU
    modules, the same units; Hardswish is > 0 exactly where its input is), train mode, and
    slogdet's log-magnitude is returned, -inf for a singular K.
    """
    m, (x, _) = _copy(model), _batch(batches, model)
    K = torch.zeros(x.shape[0], x.shape[0], dtype=torch.float64, device=x.device)

    def hook(module, inp, out):
        nonlocal K
        c = (out.detach().reshape(out.shape[0], -1) > 0).double()
        K = K + c @ c.T + (1 - c) @ (1 - c).T

    handles = [mod.register_forward_hook(hook) for mod in m.modules() if isinstance(mod, RELU_FAMILY)]
    with torch.no_grad():
        m(x)
    for h in handles:
        h.remove()
    return float(torch.linalg.slogdet(K)[1])


def synflow(model: nn.Module, batches: Batches, num_classes: int) -> float:
    """SynFlow, Tanaka et al., "Pruning neural networks without any data by iteratively
    conserving synaptic flow", NeurIPS 2020.

    Every parameter and buffer replaced by its absolute value (the reference `linearize`
    walks the whole state dict), float64 to avoid overflow, one all-ones input of the
    batch's shape, R = sum of the output; score = sum over conv/linear weights of
    |theta * dR/dtheta| (zero-cost-nas / Synaptic-Flow, which score only prunable weights).
    BN in eval mode: Synaptic-Flow's prune loop runs `model.eval()` (zero-cost-nas removes BN
    instead); with init statistics (mean 0, var 1) BN is then the identity up to eps.
    """
    x, _ = _batch(batches, model)
    m = _copy(model, train=False).double()
    with torch.no_grad():
        for t in m.state_dict().values():
            t.abs_()
    m(torch.ones((1, *x.shape[1:]), dtype=torch.float64, device=x.device)).sum().backward()
    return float(sum((w.detach() * w.grad).abs().sum() for w in _weights(m) if w.grad is not None))


def snip(model: nn.Module, batches: Batches, num_classes: int) -> float:
    """SNIP, Lee et al., "SNIP: Single-shot Network Pruning based on Connection Sensitivity",
    ICLR 2019: sum over conv/linear weights of |dL/dw * w|, L the cross-entropy of one batch
    (zero-cost-nas's `snip`: its mask gradient is exactly dL/dw * w; biases and BN excluded)."""
    m = _copy(model)
    grads = _ce_grads(m, *_batch(batches, model))
    return float(sum((g * w.detach()).abs().sum() for g, w in zip(grads, _weights(m))))


def grad_norm(model: nn.Module, batches: Batches, num_classes: int) -> float:
    """Gradient norm (Abdelfattah et al., "Zero-Cost Proxies for Lightweight NAS", ICLR 2021):
    sum over conv/linear layers of the L2 (Frobenius) norm of dL/dw, L the cross-entropy of
    one batch (zero-cost-nas's `grad_norm`: per-layer `weight.grad.norm()`, summed)."""
    m = _copy(model)
    return float(sum(g.norm() for g in _ce_grads(m, *_batch(batches, model))))


def jacob_cov(model: nn.Module, batches: Batches, num_classes: int) -> float:
    """Jacobian covariance, Mellor et al., "Neural Architecture Search without Training",
    arXiv:2006.04647 v1 (2020): J_i = d(sum of outputs)/dx_i per sample, flattened; with the
    eigenvalues v of the correlation matrix of the J_i, score = -sum(log(v + k) + 1/(v + k)),
    k = 1e-5. As in the v1 code (`get_batch_jacobian`, `eval_score`): backward of the outputs
    with ones, np.corrcoef of the rows; eigvalsh here as the matrix is symmetric (v1: eig)."""
    m, (x, _) = _copy(model), _batch(batches, model)
    x.requires_grad_(True)
    m(x).sum().backward()
    J = x.grad.reshape(x.shape[0], -1).double()
    v = torch.linalg.eigvalsh(torch.corrcoef(J))
    k = 1e-5
    return float(-(torch.log(v + k) + 1.0 / (v + k)).sum())


def zico(model: nn.Module, batches: Batches, num_classes: int) -> float:
    """ZiCo, Li et al., "ZiCo: Zero-shot NAS via Inverse Coefficient of Variation on
    Gradients", ICLR 2023.

    Per batch, the cross-entropy gradient of each conv/linear weight (train mode, gradients
    zeroed between batches as in SLDGroup/ZiCo's `getzico`); per weight tensor, the mean over
    batches of |g| and the std over batches of g (numpy's std, ddof=0); score = sum over
    tensors of log(sum over elements with std > 0 of mean/std), a tensor whose sum is 0 being
    skipped (`caculate_zico`). Needs >= 2 batches; a single batch is split into two halves.
    """
    if len(batches) < 2:
        x, y = batches[0]
        h = x.shape[0] // 2
        batches = [(x[:h], y[:h]), (x[h:], y[h:])]
    m = _copy(model)
    g = [torch.stack(t) for t in zip(*(_ce_grads(m, *_batch(batches, model, i)) for i in range(len(batches))))]
    total = 0.0
    for gi in g:
        std, mean = gi.std(0, unbiased=False), gi.abs().mean(0)
        s = float((mean[std > 0] / std[std > 0]).sum())
        if s != 0:
            total += math.log(s)
    return total


def _pre_gap(model: nn.Module) -> nn.Module | None:
    """The global pool whose input is the pre-GAP feature map: the project's `Net` has it at
    `head.pool` (head = 1x1 conv + BN + act, pool, [FC], classifier); otherwise the last
    GlobalPool / AdaptiveAvgPool2d; None (use the output) when there is none."""
    pool = getattr(getattr(model, "head", None), "pool", None)
    if pool is not None:
        return pool
    pools = [mod for mod in model.modules() if isinstance(mod, (GlobalPool, nn.AdaptiveAvgPool2d))]
    return pools[-1] if pools else None


def zen(model: nn.Module, batches: Batches, num_classes: int) -> float:
    """Zen-score, Lin et al., "Zen-NAS: A Zero-Shot NAS for High-Performance Image
    Recognition", ICCV 2021.

    No data: only the batch's shape is read. As in idstcv/ZenNAS `compute_nas_score` (one
    repeat, mixup_gamma 0.01): weights re-drawn N(0, 1) (conv, linear; biases 0; BN weight 1,
    bias 0), train mode, x and x' = x + 0.01 eps Gaussian; f = the pre-GAP feature map, here
    the input of `head.pool` in `Net` (after the head's 1x1 conv + BN + activation, as
    ZenNAS's last conv before its GAP); score = log mean_batch sum_CHW |f(x) - f(x')| + sum
    over BatchNorm2d of log sqrt(mean running_var) (the running variances after both passes).
    """
    m, (x, _) = _copy(model), _batch(batches, model)
    with torch.no_grad():
        for mod in m.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                nn.init.normal_(mod.weight)
                if mod.bias is not None:
                    nn.init.zeros_(mod.bias)
            elif isinstance(mod, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.ones_(mod.weight)
                nn.init.zeros_(mod.bias)
        pool, feats = _pre_gap(m), []
        handle = pool.register_forward_pre_hook(lambda mod, inp: feats.append(inp[0].clone())) if pool else None
        a = torch.randn(x.shape, device=x.device)
        b = a + 0.01 * torch.randn(x.shape, device=x.device)
        outs = [m(a), m(b)]
        if handle is not None:
            handle.remove()
            outs = feats
        diff = (outs[0] - outs[1]).abs().reshape(x.shape[0], -1).sum(1).mean()
        bn = sum(math.log(math.sqrt(float(mod.running_var.mean())))
                 for mod in m.modules() if isinstance(mod, nn.BatchNorm2d))
    return math.log(float(diff)) + bn


# ---- the registry ----------------------------------------------------------------------
@dataclass(frozen=True)
class ZeroCostScore:
    """A registered score. `needs` = "model": called as (model, batches, num_classes);
    "arch": called as (arch), computed from the IR alone (no network is built)."""

    name: str
    description: str
    fn: Callable[..., float]
    needs: str = "model"

    def __call__(self, *args) -> float:
        return float(self.fn(*args))


SCORES: dict[str, ZeroCostScore] = {s.name: s for s in (
    ZeroCostScore("naswot", "log|det| of the ReLU-code Hamming kernel (Mellor et al., ICML 2021)", naswot),
    ZeroCostScore("synflow", "synaptic flow of the |weights| on an all-ones input (Tanaka et al., 2020)", synflow),
    ZeroCostScore("snip", "sum |dL/dw * w|, cross-entropy on one batch (Lee et al., ICLR 2019)", snip),
    ZeroCostScore("grad_norm", "sum of per-layer gradient L2 norms (Abdelfattah et al., ICLR 2021)", grad_norm),
    ZeroCostScore("jacob_cov", "input-Jacobian correlation spectrum (Mellor et al., arXiv v1 2020)", jacob_cov),
    ZeroCostScore("zico", "log inverse coefficient of variation of gradients (Li et al., ICLR 2023)", zico),
    ZeroCostScore("zen", "log pre-GAP perturbation response + BN scaling (Lin et al., ICCV 2021)", zen),
    ZeroCostScore("flops", "multiply-adds counted from the IR (search_spaces.counting)",
                  lambda arch: count(arch)["macs"], needs="arch"),
    ZeroCostScore("params", "parameters counted from the IR (search_spaces.counting)",
                  lambda arch: count(arch)["params"], needs="arch"),
)}


def get_score(name: str) -> ZeroCostScore:
    if name not in SCORES:
        raise UserError(f"unknown zero-cost score {name!r}; known: {', '.join(SCORES)}")
    return SCORES[name]


def score_arch(name: str, arch: Arch, batches: Batches, seed: int = 0) -> float:
    """Score `arch` by `name`: IR scores read the arch; the others build it with
    `build_model` under `torch.manual_seed(seed)` (the caller's RNG state is restored)."""
    s = get_score(name)
    if s.needs == "arch":
        return s(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return s(build_model(arch), batches, arch.num_classes)
