"""PSMNet's training loss: weighted smooth-L1 on every output, over pixels with known disparity in range."""

from collections.abc import Sequence

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
