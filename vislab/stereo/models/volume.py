"""Cost-volume construction and disparity regression (soft argmin over the upsampled volume).

The regression has two implementations with the same numbers: ``regress_full`` follows the paper
literally (trilinear upsample of the whole 1/4-scale cost to (D, H, W), softmax, expectation) and is
used for training; ``regress_chunked`` produces the same disparities a band of rows at a time, so the
full-resolution (D, H, W) volume (368 MB per copy at KITTI size) never exists at once.
"""

import torch
import torch.nn.functional as F

# Confidence = softmax probability mass within this many pixels of the regressed disparity.
CONFIDENCE_RADIUS = 2.0


def build_concat_volume(left: torch.Tensor, right: torch.Tensor, num_disp: int,
                        channels_last: bool = False) -> torch.Tensor:
    """Concatenation cost volume (B, 2C, num_disp, H, W), built without a loop over disparities.

    Channels [0, C) hold the left feature and [C, 2C) the right feature shifted right by d; both are
    zero where x < d (no match inside the image), as in PSMNet. With ``channels_last`` the result
    is allocated in ``torch.channels_last_3d`` layout, which CPU 3D convolutions run faster on.
    """
    b, c, h, w = left.shape
    if channels_last:
        volume = left.new_empty(b, num_disp, h, w, 2 * c).permute(0, 4, 1, 2, 3)
    else:
        volume = left.new_empty(b, 2 * c, num_disp, h, w)
    d = torch.arange(num_disp, device=left.device)
    x = torch.arange(w, device=left.device)
    shifted = x[None, :] - d[:, None]  # (D, W): source column in the right image, < 0 where no match
    valid = (shifted >= 0).to(left.dtype)
    volume[:, :c].copy_(left.unsqueeze(2).expand(b, c, num_disp, h, w)).mul_(valid[:, None, :])
    # Zero-pad the right feature by num_disp columns on the left; column -k then reads a zero.
    padded = F.pad(right, (num_disp, 0))
    volume[:, c:] = padded[..., shifted + num_disp].permute(0, 1, 3, 2, 4)
    return volume


def regress_full(cost: torch.Tensor, max_disp: int, size: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """(B, D/4, H/4, W/4) matching cost -> (B, H, W) disparity, as the paper writes it (autograd-friendly)."""
    up = F.interpolate(cost.unsqueeze(1), size=(max_disp, *size), mode="trilinear", align_corners=align_corners)
    prob = F.softmax(up.squeeze(1), dim=1)
    disp_values = torch.arange(max_disp, device=cost.device, dtype=prob.dtype).view(1, max_disp, 1, 1)
    return (prob * disp_values).sum(dim=1)


def _linear_taps(in_size: int, out_size: int, start: int, stop: int, align_corners: bool,
                 device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Source indices (i0, i1) and weight of i1 for output positions [start, stop), as F.interpolate computes them."""
    dst = torch.arange(start, stop, dtype=torch.float64)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = dst * scale
    else:
        src = ((dst + 0.5) * (in_size / out_size) - 0.5).clamp(min=0.0)
    i0 = src.floor().long().clamp(max=in_size - 1)
    i1 = (i0 + 1).clamp(max=in_size - 1)
    lam = (src - i0).to(dtype)
    return i0.to(device), i1.to(device), lam.to(device)


def _lerp_along(x: torch.Tensor, dim: int, taps: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
    i0, i1, lam = taps
    shape = [1] * x.dim()
    shape[dim] = -1
    lo = x.index_select(dim, i0)
    return lo.add_((x.index_select(dim, i1) - lo).mul_(lam.view(shape)))


def _interp_matrix(in_size: int, out_size: int, start: int, stop: int, align_corners: bool,
                   device: torch.device, dtype: torch.dtype) -> tuple[torch.Tensor, int]:
    """Linear-interpolation weights for outputs [start, stop) as a (stop - start, n) matrix over the
    source window [lo, lo + n) they read (two non-zeros per row); returns (matrix, lo)."""
    i0, i1, lam = _linear_taps(in_size, out_size, start, stop, align_corners, device, dtype)
    lo, hi = int(i0.min()), int(i1.max()) + 1
    m = torch.zeros(stop - start, hi - lo, device=device, dtype=dtype)
    rows = torch.arange(stop - start, device=device)
    m.index_put_((rows, i0 - lo), 1 - lam, accumulate=True)
    m.index_put_((rows, i1 - lo), lam, accumulate=True)  # accumulate: i0 == i1 at the clamped border
    return m, lo


def regress_chunked(cost: torch.Tensor, max_disp: int, size: tuple[int, int], rows: tuple[int, int],
                    cols: tuple[int, int], align_corners: bool, return_confidence: bool = True,
                    chunk_elements: int = 1 << 24) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fused trilinear upsample + softmax + regression for the output window ``rows`` x ``cols`` only.

    ``size`` is the full (padded) output size the cost is upsampled to; only the requested window is
    computed, a band of rows at a time with at most ``chunk_elements`` values of the (D, rows, W)
    volume in memory (64 MB by default; the 3D CNN before this needs several times more). The
    upsampling is separable: W and H are interpolated with PyTorch's source-index formula, D as a
    matrix product, which gives the same values as one trilinear ``F.interpolate`` up to float rounding.

    Confidence is the softmax probability mass within ``CONFIDENCE_RADIUS`` px of the estimate:
    near 1 for a sharp single peak, low for flat or multi-modal matching costs.
    """
    b, d4, h4, w4 = cost.shape
    out_h, out_w = size
    dev, dt = cost.device, cost.dtype
    cost = _lerp_along(cost, 3, _linear_taps(w4, out_w, cols[0], cols[1], align_corners, dev, dt))
    d_matrix, _ = _interp_matrix(d4, max_disp, 0, max_disp, align_corners, dev, dt)  # (D, D/4)
    disp_values = torch.arange(max_disp, device=dev, dtype=dt)
    n_rows, n_cols = rows[1] - rows[0], cols[1] - cols[0]
    disparity = cost.new_empty(b, n_rows, n_cols)
    confidence = cost.new_empty(b, n_rows, n_cols) if return_confidence else None
    chunk_rows = max(1, chunk_elements // (b * max_disp * n_cols))
    for r0 in range(rows[0], rows[1], chunk_rows):
        r1 = min(r0 + chunk_rows, rows[1])
        # H: a small (rows, window) matrix over just the source rows this band reads.
        h_matrix, lo = _interp_matrix(h4, out_h, r0, r1, align_corners, dev, dt)
        band = torch.matmul(h_matrix, cost[:, :, lo:lo + h_matrix.shape[1]])  # (B, D/4, rows, W)
        # (B, D, rows * W): the only full-D tensor, one band at a time; softmax computed in place.
        weights = torch.matmul(d_matrix, band.reshape(b, d4, -1))
        del band
        weights -= weights.amax(dim=1, keepdim=True)
        weights.exp_()
        total = weights.sum(dim=1)
        est = torch.matmul(disp_values, weights).div_(total).view(b, r1 - r0, n_cols)
        out = slice(r0 - rows[0], r1 - rows[0])
        disparity[:, out] = est
        if confidence is not None:
            mass = _mass_near(weights.view(b, max_disp, r1 - r0, n_cols), est, max_disp)
            confidence[:, out] = mass.div_(total.view_as(mass))
    return disparity, confidence


def _mass_near(weights: torch.Tensor, est: torch.Tensor, max_disp: int) -> torch.Tensor:
    """Sum of ``weights`` over the integer disparities d with |d - est| <= CONFIDENCE_RADIUS."""
    r = CONFIDENCE_RADIUS
    width = int(2 * r) + 1
    first = torch.ceil(est - r).long()
    idx = first.unsqueeze(1) + torch.arange(width, device=est.device).view(1, width, 1, 1)
    inside = (idx >= 0) & (idx < max_disp) & ((idx.to(est.dtype) - est.unsqueeze(1)).abs() <= r)
    picked = weights.gather(1, idx.clamp(0, max_disp - 1))
    return (picked * inside).sum(dim=1)
