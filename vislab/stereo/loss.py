"""PSMNet's training losses, over pixels with known disparity in range.

* ``smoothl1`` (the paper): weighted smooth-L1 between each output's soft-argmin and the ground truth.
* ``adl``: the adaptive multi-modal cross-entropy of Xu et al., "Adaptive Multi-Modal Cross-Entropy Loss for
  Stereo Matching" (CVPR 2024), on the whole softmax over disparities. Each pixel's target is a mixture of
  discrete Laplacians, one per cluster of ground-truth disparities in its neighbourhood, so a pixel at a depth
  edge is taught two modes (its own, dominant, and the other side's, weaker) instead of one blurred value.
  Written from the paper's description; the clustering is 1-D single linkage (DBSCAN with a minimum of one
  sample reduces to it), and the constants are :class:`ADLParams`.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

# Paper: 0.5 / 0.7 / 1.0 on the three hourglass outputs; the basic variant has one output.
OUTPUT_WEIGHTS = {"stackhourglass": (0.5, 0.7, 1.0), "basic": (1.0,)}


def disparity_mask(disp: torch.Tensor, valid: torch.Tensor, max_disp: int) -> torch.Tensor:
    """Pixels that supervise training: valid ground truth with ``0 < gt < max_disp``."""
    return valid & (disp > 0) & (disp < max_disp)


def psmnet_loss(outputs: Sequence[torch.Tensor], disp: torch.Tensor, mask: torch.Tensor,
                weights: Sequence[float]) -> torch.Tensor:
    """``sum_i w_i * smooth_l1(out_i[mask], gt[mask])`` (mean over masked pixels).

    A batch without a single supervised pixel gives a zero loss that still touches every output, so that
    backward (and DDP's gradient all-reduce) runs the same way on every rank.
    """
    if len(outputs) != len(weights):
        raise ValueError(f"{len(outputs)} model outputs but {len(weights)} loss weights")
    if not bool(mask.any()):
        return sum(0.0 * out.sum() for out in outputs)
    target = disp[mask]
    return sum(w * F.smooth_l1_loss(out[mask], target, reduction="mean")
               for w, out in zip(weights, outputs, strict=True))


# ------------------------------------------------------------------------------------------------- ADL

@dataclass(frozen=True)
class ADLParams:
    """The multi-modal target of ADL (Xu et al., CVPR 2024).

    Attributes:
        window: side of the square neighbourhood whose ground truth builds a pixel's modes (odd).
        eps: neighbour disparities closer than this (px) to each other belong to one mode (1-D single linkage,
            which is what DBSCAN with one sample per core point reduces to on a line).
        alpha: base weight of the pixel's own mode; the remaining ``1 - alpha`` is shared out over all modes in
            proportion to how many neighbours each holds.
        scale: scale ``b`` (px) of each mode's discrete Laplacian ``softmax(-|d - mu| / b)``.
    """

    window: int = 3
    eps: float = 1.0
    alpha: float = 0.8
    scale: float = 0.8


def adl_modes(disp: torch.Tensor, mask: torch.Tensor,
              params: ADLParams = ADLParams()) -> tuple[torch.Tensor, torch.Tensor]:
    """Modes of every pixel's target distribution from the ground truth of its neighbourhood.

    Args:
        disp: (B, H, W) ground-truth disparity.
        mask: (B, H, W) bool, pixels whose ground truth is known (neighbours outside it are ignored).

    Returns:
        ``(locations, weights)``, each (B, K, H, W) with ``K = window**2`` mode slots: the pixel's own mode
        sits at its ground truth with weight ``alpha + (1 - alpha) n_own / n``, every other cluster of
        neighbours at their mean with weight ``(1 - alpha) n_k / n`` (``n``: known neighbours, the pixel
        included); unused slots and pixels outside ``mask`` have weight 0. Weights sum to 1 per masked pixel.
    """
    if params.window < 1 or params.window % 2 == 0:
        raise ValueError(f"ADL window must be a positive odd size, got {params.window}")
    b, h, w = disp.shape
    k = params.window * params.window
    pad = params.window // 2
    vals = F.unfold(disp.unsqueeze(1).float(), params.window, padding=pad)  # (B, K, H*W)
    known = F.unfold(mask.unsqueeze(1).float(), params.window, padding=pad) > 0.5
    # Unknown neighbours sort to the end (+inf) and never join a cluster (their weight is 0 below).
    vals = torch.where(known, vals, torch.full_like(vals, math.inf))
    sorted_vals, order = vals.sort(dim=1)
    sorted_known = known.gather(1, order)
    gaps = sorted_vals.diff(dim=1) > params.eps
    cluster = F.pad(gaps.long().cumsum(dim=1), (0, 0, 1, 0))  # (B, K, N): cluster index of each sorted value
    ones = sorted_known.float()
    count = torch.zeros_like(ones).scatter_add_(1, cluster, ones)
    total = torch.zeros_like(ones).scatter_add_(1, cluster, torch.where(sorted_known, sorted_vals, 0.0))
    lo = torch.full_like(ones, math.inf).scatter_reduce_(1, cluster, sorted_vals, "amin")
    hi = torch.full_like(ones, -math.inf).scatter_reduce_(1, cluster, torch.where(sorted_known, sorted_vals,
                                                                                  -math.inf), "amax")
    centre = disp.reshape(b, 1, h * w).float()
    n = count.sum(dim=1, keepdim=True).clamp_min(1.0)
    own = (count > 0) & (lo <= centre) & (centre <= hi)
    weights = torch.where(own, params.alpha + (1 - params.alpha) * count / n, (1 - params.alpha) * count / n)
    locations = torch.where(own, centre, total / count.clamp_min(1.0))
    pixel = mask.reshape(b, 1, h * w)
    weights = torch.where(pixel & (count > 0), weights, 0.0)
    return locations.view(b, k, h, w), weights.view(b, k, h, w)


def adl_target(disp: torch.Tensor, mask: torch.Tensor, num_disp: int,
               params: ADLParams = ADLParams()) -> torch.Tensor:
    """The full target distribution (B, D, H, W) over integer disparities 0..D-1 (zero outside ``mask``).

    For tests and plots; the loss never materialises it (see :func:`adl_loss`).
    """
    locations, weights = adl_modes(disp, mask, params)
    d = torch.arange(num_disp, dtype=torch.float32, device=disp.device).view(1, -1, 1, 1)
    target = torch.zeros(disp.shape[0], num_disp, *disp.shape[1:], device=disp.device)
    for slot in range(locations.shape[1]):
        target += weights[:, slot:slot + 1] * torch.softmax(-(d - locations[:, slot:slot + 1]).abs() / params.scale,
                                                            dim=1)
    return target


def adl_cross_entropy(logits: torch.Tensor, disp: torch.Tensor, mask: torch.Tensor,
                      params: ADLParams = ADLParams()) -> torch.Tensor:
    """Mean over ``mask`` of ``-sum_d target(d) log softmax(logits)(d)`` for logits (B, D, H, W)."""
    if not bool(mask.any()):
        return 0.0 * logits.sum()
    log_p = torch.log_softmax(logits, dim=1)
    locations, weights = adl_modes(disp, mask, params)
    d = torch.arange(logits.shape[1], dtype=log_p.dtype, device=logits.device).view(1, -1, 1, 1)
    per_pixel = torch.zeros_like(disp, dtype=log_p.dtype)
    for slot in range(locations.shape[1]):
        w = weights[:, slot]
        if not bool((w > 0).any()):  # most slots are empty away from depth edges
            continue
        lap = torch.softmax(-(d - locations[:, slot:slot + 1]).abs() / params.scale, dim=1)
        per_pixel = per_pixel - w * (lap * log_p).sum(dim=1)
    return per_pixel[mask].mean()


def adl_loss(outputs: Sequence[torch.Tensor], disp: torch.Tensor, mask: torch.Tensor, weights: Sequence[float],
             params: ADLParams = ADLParams()) -> torch.Tensor:
    """``sum_i w_i * ADL(logits_i)`` over the model's outputs (logits, as ``model(l, r, return_logits=True)``)."""
    if len(outputs) != len(weights):
        raise ValueError(f"{len(outputs)} model outputs but {len(weights)} loss weights")
    return sum(w * adl_cross_entropy(out, disp, mask, params) for w, out in zip(weights, outputs, strict=True))


def expected_disparity(logits: torch.Tensor) -> torch.Tensor:
    """Soft-argmin of logits (B, D, H, W) -> (B, H, W) (for logging the training EPE under ADL)."""
    d = torch.arange(logits.shape[1], dtype=logits.dtype, device=logits.device).view(1, -1, 1, 1)
    return (torch.softmax(logits, dim=1) * d).sum(dim=1)
