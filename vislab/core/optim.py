"""Muon for a network's weight matrices and AdamW for the rest of its parameters, in one optimizer.

Muon (K. Jordan et al., 2024, "Muon: An optimizer for hidden layers in neural networks") is SGD with Nesterov
momentum in which the update of every weight matrix is replaced by the nearest semi-orthogonal matrix (all
singular values ~1), computed with five steps of a quintic Newton-Schulz iteration. Every direction of the
matrix then moves at the same rate, instead of the few dominant ones that plain gradients favour, which makes
short training runs markedly more sample-efficient. A convolution kernel is treated as the matrix
(out_channels, in_channels * kh * kw). Biases, normalisation weights and the output layer keep AdamW, as the
method prescribes. ``torch.optim.Muon`` exists but accepts 2-D parameters only, hence this class.
"""

import math
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

# The quintic's coefficients from the Muon write-up: they drive singular values from (0, 1] to about 0.7-1.2
# in five steps, which is all the update needs (an exact orthogonalisation is not the point).
NEWTON_SCHULZ_COEFFICIENTS = (3.4445, -4.7750, 2.0315)


def orthogonalize(matrix: torch.Tensor, steps: int = 5, eps: float = 1e-7) -> torch.Tensor:
    """Approximately ``U V^T`` of the SVD ``matrix = U S V^T``, by a quintic Newton-Schulz iteration."""
    a, b, c = NEWTON_SCHULZ_COEFFICIENTS
    x = matrix / (matrix.norm() + eps)  # all singular values <= 1, where the iteration converges
    transposed = x.size(0) > x.size(1)
    if transposed:  # iterate on the smaller Gram matrix
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * gram @ gram) @ x
    return x.T if transposed else x


class MuonAdamW(torch.optim.Optimizer):
    """Muon on parameter groups with ``muon=True``, AdamW on the others.

    Each group has ``lr`` and ``weight_decay`` (decoupled, for both kinds); Muon groups use ``momentum``
    (Nesterov) and ``ns_steps``, AdamW groups ``betas`` and ``eps``. A Muon step of a (rows, cols) matrix is
    scaled by ``sqrt(max(1, rows / cols))`` so that tall and wide matrices change at comparable rates.
    Build the groups with :func:`muon_param_groups`.
    """

    def __init__(self, params: Iterable[Any], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, momentum: float = 0.95, ns_steps: int = 5):
        defaults = dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, momentum=momentum,
                        ns_steps=ns_steps, muon=False)
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            update = self._muon_update if group["muon"] else self._adamw_update
            for p in group["params"]:
                if p.grad is not None:
                    if group["weight_decay"]:
                        p.mul_(1.0 - group["lr"] * group["weight_decay"])
                    update(p, group)
        return loss

    def _muon_update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if "momentum_buffer" not in state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"]
        buf.mul_(group["momentum"]).add_(p.grad)
        nesterov = p.grad.add(buf, alpha=group["momentum"])
        matrix = nesterov.reshape(p.shape[0], -1)
        direction = orthogonalize(matrix, group["ns_steps"]).reshape(p.shape)
        scale = math.sqrt(max(1.0, matrix.shape[0] / matrix.shape[1]))
        p.add_(direction, alpha=-group["lr"] * scale)

    def _adamw_update(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if "step" not in state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(p.grad, 1.0 - beta1)
        exp_avg_sq.mul_(beta2).addcmul_(p.grad, p.grad, value=1.0 - beta2)
        bias1, bias2 = 1.0 - beta1 ** state["step"], 1.0 - beta2 ** state["step"]
        denom = (exp_avg_sq.sqrt() / math.sqrt(bias2)).add_(group["eps"])
        p.addcdiv_(exp_avg, denom, value=-group["lr"] / bias1)


def muon_param_groups(model: nn.Module, lr: float, muon_lr: float, weight_decay: float = 0.0) -> list[dict[str, Any]]:
    """Groups for :class:`MuonAdamW`: every weight of 2 or more dimensions but the output layer's on Muon.

    The output layer is the model's last ``nn.Linear`` (its weights map features to class scores, which
    Muon's equal-rate updates do not suit); biases and 1-D parameters always stay on AdamW.
    """
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    output_params = {id(p) for p in linears[-1].parameters()} if linears else set()
    matrices, others = [], []
    for p in model.parameters():
        if not p.requires_grad:
            continue
        (matrices if p.ndim >= 2 and id(p) not in output_params else others).append(p)
    return [dict(params=matrices, lr=muon_lr, weight_decay=weight_decay, muon=True),
            dict(params=others, lr=lr, weight_decay=weight_decay, muon=False)]
