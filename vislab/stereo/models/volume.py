"""Cost-volume construction and disparity regression (soft argmin over the upsampled volume).

The regression (the paper's trilinear upsample of the 1/4-scale cost to (D, H, W), softmax over D,
expectation) is computed a band of output rows at a time, so the full-resolution (D, H, W) volume
(368 MB per copy at KITTI size) never exists at once: ``regress_chunked`` without autograd (inference,
with a confidence map), ``soft_argmin`` with an analytic backward (training).
"""

import torch
import torch.nn.functional as F

from vislab.core.errors import VislabError

# Confidence = softmax probability mass within this many pixels of the regressed disparity (soft-argmin).
CONFIDENCE_RADIUS = 2.0

# Disparity estimators on the softmax over disparities (see ``regress_chunked``).
ESTIMATORS = ("softargmin", "dominant")
# Half-width in pixels of the dominant-mode window (the issue's ±4 px).
DEFAULT_ESTIMATOR_WINDOW = 4
# What predict / eval / submit and the Python API use unless told otherwise: measured on the 50 held-out
# synthetic scenes with the shipped weights, dominant lowers D1 from 20.55 % to 16.87 % (EPE 5.296 -> 5.366 px;
# visible pixels: D1 8.93 -> 6.66 %, EPE 2.663 -> 2.588 px); see docs/stereo-quality.md. ``model.infer`` itself
# keeps soft-argmin by default (the paper's estimator, so official checkpoints keep their published numbers).
DEFAULT_ESTIMATOR = "dominant"


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


def _d_matrix(d4: int, max_disp: int, align_corners: bool, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    return _interp_matrix(d4, max_disp, 0, max_disp, align_corners, device, dtype)[0]  # (D, D/4)


def _softmax_bands(cost_w: torch.Tensor, d_matrix: torch.Tensor, out_h: int, rows: tuple[int, int],
                   align_corners: bool, chunk_elements: int, right_view: bool = False):
    """Yield ``(r0, r1, h_matrix, lo, weights, right_weights)`` band by band: ``weights`` (B, D, (r1 - r0) * W)
    are the exponentiated, max-shifted upsampled logits of output rows [r0, r1) (softmax up to the normaliser);
    ``h_matrix`` (r1 - r0, k) maps source rows [lo, lo + k) of ``cost_w`` to those rows. With ``right_view``,
    ``right_weights`` are the same for the right image's pixels, read from the same logits
    (:func:`_right_view_logits`); otherwise None."""
    b, d4, h4, n_cols = cost_w.shape
    max_disp = d_matrix.shape[0]
    # the right view's logits are a second band-sized tensor (and its padded source a third): smaller bands
    chunk_rows = max(1, chunk_elements // (b * max_disp * n_cols * (3 if right_view else 1)))
    for r0 in range(rows[0], rows[1], chunk_rows):
        r1 = min(r0 + chunk_rows, rows[1])
        # H: a small (rows, window) matrix over just the source rows this band reads.
        h_matrix, lo = _interp_matrix(h4, out_h, r0, r1, align_corners, cost_w.device, cost_w.dtype)
        band = torch.matmul(h_matrix, cost_w[:, :, lo:lo + h_matrix.shape[1]])  # (B, D/4, rows, W)
        # (B, D, rows * W): the only full-D tensor, one band at a time; softmax computed in place.
        weights = torch.matmul(d_matrix, band.reshape(b, d4, -1))
        del band
        right_weights = None
        if right_view:
            right_weights = _right_view_logits(weights.view(b, max_disp, r1 - r0, n_cols)).view(b, max_disp, -1)
            right_weights -= right_weights.amax(dim=1, keepdim=True)
            right_weights.exp_()
        weights -= weights.amax(dim=1, keepdim=True)
        weights.exp_()
        yield r0, r1, h_matrix, lo, weights, right_weights


def _right_view_logits(logits: torch.Tensor) -> torch.Tensor:
    """The right image's logits (B, D, rows, W) from the left image's: ``out[..., d, :, x] = logits[..., d, :, x + d]``.

    Left pixel x at disparity d and right pixel x - d are the same match, so the left view's (aggregated) cost
    volume, sheared along its rows, scores every right pixel's candidates too; where x + d falls outside the image
    the candidate does not exist (-inf, weight 0). Disparity 0 always exists, so every pixel has a finite logit.
    """
    b, d, r, w = logits.shape
    padded = logits.new_full((b, d, r, w + d), float("-inf"))
    padded[..., :w] = logits
    # a view whose step from one disparity plane to the next also moves one column to the right
    stride_b, stride_d, stride_r, _ = padded.stride()
    return padded.as_strided((b, d, r, w), (stride_b, stride_d + 1, stride_r, 1)).contiguous()


def regress_chunked(cost: torch.Tensor, max_disp: int, size: tuple[int, int], rows: tuple[int, int],
                    cols: tuple[int, int], align_corners: bool, return_confidence: bool = True,
                    chunk_elements: int = 1 << 24, estimator: str = "softargmin",
                    window: int = DEFAULT_ESTIMATOR_WINDOW) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Fused trilinear upsample + softmax + regression for the output window ``rows`` x ``cols`` only.

    ``size`` is the full (padded) output size the cost is upsampled to; only the requested window is
    computed, a band of rows at a time with at most ``chunk_elements`` values of the (D, rows, W)
    volume in memory (64 MB by default; the 3D CNN before this needs several times more). The
    upsampling is separable: W and H are interpolated with PyTorch's source-index formula, D as a
    matrix product, which gives the same values as one trilinear ``F.interpolate`` up to float rounding.
    No autograd graph is recorded (see :func:`soft_argmin` for the differentiable version).

    ``estimator``: ``"softargmin"`` (the paper: the expectation over all disparities) or ``"dominant"``
    (the disparity ``k`` whose window ``[k - window, k + window]`` holds the most probability mass, then the
    expectation inside that window only). The soft-argmin averages every mode of the softmax, so at a depth
    edge it returns a disparity between foreground and background that belongs to neither; the dominant mode
    keeps the more probable side.

    Confidence follows the estimator: for soft-argmin the softmax probability mass within
    ``CONFIDENCE_RADIUS`` px of the estimate, for dominant the mass inside the chosen window; near 1 for a
    sharp single peak, low for flat or multi-modal matching costs.
    """
    disparity, confidence, _ = regress_views(cost, max_disp, size, rows, cols, align_corners, return_confidence,
                                             chunk_elements, estimator, window, right_view=False)
    return disparity, confidence


def regress_views(cost: torch.Tensor, max_disp: int, size: tuple[int, int], rows: tuple[int, int],
                  cols: tuple[int, int], align_corners: bool, return_confidence: bool = True,
                  chunk_elements: int = 1 << 24, estimator: str = "softargmin",
                  window: int = DEFAULT_ESTIMATOR_WINDOW, right_view: bool = True
                  ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """:func:`regress_chunked`, and with ``right_view`` also the right image's disparity (B, rows, cols) read
    from the same cost volume (its rows sheared, :func:`_right_view_logits`; no confidence), for a left-right
    check at the price of a second regression instead of a second network pass. ``cols`` must then start at 0
    (the whole width: a right pixel's candidates lie anywhere to its right)."""
    if estimator not in ESTIMATORS:
        raise VislabError(f"unknown disparity estimator {estimator!r}; choose one of {', '.join(ESTIMATORS)}")
    if int(window) < 0:
        raise VislabError(f"the dominant-mode window must be >= 0 px, got {window}")
    if right_view and cols[0] != 0:
        raise ValueError("the right view needs the output window to start at column 0")
    b, d4, h4, w4 = cost.shape
    dev, dt = cost.device, cost.dtype
    cost_w = _lerp_along(cost, 3, _linear_taps(w4, size[1], cols[0], cols[1], align_corners, dev, dt))
    d_matrix = _d_matrix(d4, max_disp, align_corners, dev, dt)
    disp_values = torch.arange(max_disp, device=dev, dtype=dt)
    n_rows, n_cols = rows[1] - rows[0], cols[1] - cols[0]
    disparity = cost.new_empty(b, n_rows, n_cols)
    confidence = cost.new_empty(b, n_rows, n_cols) if return_confidence else None
    disparity_right = cost.new_empty(b, n_rows, n_cols) if right_view else None
    for r0, r1, _, _, weights, right_weights in _softmax_bands(cost_w, d_matrix, size[0], rows, align_corners,
                                                                chunk_elements, right_view):
        out = slice(r0 - rows[0], r1 - rows[0])
        est, conf = _estimate(weights, estimator, int(window), disp_values, return_confidence)
        disparity[:, out] = est.view(b, r1 - r0, n_cols)
        if confidence is not None:
            confidence[:, out] = conf.view(b, r1 - r0, n_cols)
        if disparity_right is not None:
            est, _ = _estimate(right_weights, estimator, int(window), disp_values, False)
            disparity_right[:, out] = est.view(b, r1 - r0, n_cols)
    return disparity, confidence, disparity_right


def _estimate(weights: torch.Tensor, estimator: str, window: int, disp_values: torch.Tensor,
              return_confidence: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One band's unnormalised softmax weights (B, D, N) -> (disparity (B, N), confidence (B, N) or None)."""
    total = weights.sum(dim=1)
    if estimator == "dominant":
        est, mass = dominant_mode(weights, window)
        return est, mass.div_(total) if return_confidence else None
    est = torch.matmul(disp_values, weights).div_(total)
    if not return_confidence:
        return est, None
    b, d, n = weights.shape
    mass = _mass_near(weights.view(b, d, 1, n), est.view(b, 1, n), d)
    return est, mass.div_(total.view_as(mass)).view(b, n)


def dominant_mode(weights: torch.Tensor, window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dominant-mode disparity of unnormalised softmax weights (B, D, N) -> (estimate (B, N), window mass (B, N)).

    The window ``[k - window, k + window]`` (clipped to [0, D - 1]) with the largest summed weight is chosen
    (ties: the smallest ``k``); the estimate is the weighted mean of the disparities inside it.
    """
    b, d, n = weights.shape
    # Window sums for every centre: 2 * window + 1 shifted slices of the zero-padded weights added up (the zeros
    # clip the window to [0, D - 1]). Sums of a few non-negative values, so float32 is exact enough; the float64
    # cumulative sum this replaced, subtracted, took twice the time for the same choices but at near-ties. Only
    # operators ONNX has: the exported graph (vislab.stereo.export) runs this same function.
    padded = F.pad(weights, (0, 0, window, window))
    mass_all = padded[:, :d].clone()  # (B, D, N)
    for offset in range(1, 2 * window + 1):
        mass_all += padded[:, offset:offset + d]
    del padded
    best = mass_all.argmax(dim=1, keepdim=True)  # (B, 1, N)
    mass = mass_all.gather(1, best).squeeze(1)
    offsets = torch.arange(-window, window + 1, device=weights.device).view(1, -1, 1)
    idx = best + offsets  # (B, 2w + 1, N)
    inside = ((idx >= 0) & (idx < d)).to(weights.dtype)
    picked = weights.gather(1, idx.clamp(0, d - 1)) * inside
    first = (picked * idx.to(weights.dtype)).sum(dim=1)
    est = first / picked.sum(dim=1).clamp_min(torch.finfo(weights.dtype).tiny)
    return est, mass


class _SoftArgmin(torch.autograd.Function):
    """``regress_chunked`` with an analytic backward that recomputes each band instead of storing it.

    With p = softmax(z) over disparities and disp = sum_d d p_d, d disp / d z_d = p_d (d - disp); the
    gradient then flows back through the (linear) upsampling as its transpose: matrix products for D and
    H, an index_add for W. Autograd through ``F.interpolate`` + softmax would keep several full
    (D, H, W) volumes per output for the backward pass (~100 MB each at 256x512, D=192); this keeps one band.
    """

    @staticmethod
    def forward(ctx, cost, max_disp, size, rows, cols, align_corners, chunk_elements):  # type: ignore[override]
        disparity, _ = regress_chunked(cost, max_disp, size, rows, cols, align_corners, False, chunk_elements)
        ctx.save_for_backward(cost, disparity)
        ctx.args = (max_disp, size, rows, cols, align_corners, chunk_elements)
        return disparity

    @staticmethod
    def backward(ctx, grad_disp):  # type: ignore[override]
        cost, disparity = ctx.saved_tensors
        max_disp, size, rows, cols, align_corners, chunk_elements = ctx.args
        b, d4, h4, w4 = cost.shape
        dev, dt = cost.device, cost.dtype
        w_taps = _linear_taps(w4, size[1], cols[0], cols[1], align_corners, dev, dt)
        cost_w = _lerp_along(cost, 3, w_taps)
        d_matrix = _d_matrix(d4, max_disp, align_corners, dev, dt)
        disp_values = torch.arange(max_disp, device=dev, dtype=dt).view(1, max_disp, 1)
        grad_cost_w = torch.zeros_like(cost_w)
        n_cols = cols[1] - cols[0]
        for r0, r1, h_matrix, lo, weights, _ in _softmax_bands(cost_w, d_matrix, size[0], rows, align_corners,
                                                               chunk_elements):
            out = slice(r0 - rows[0], r1 - rows[0])
            est = disparity[:, out].reshape(b, 1, -1)
            g = grad_disp[:, out].reshape(b, 1, -1)
            # dL/dz = p * (d - disp) * dL/ddisp, computed in place in the band's weights.
            weights.div_(weights.sum(dim=1, keepdim=True)).mul_(disp_values - est).mul_(g)
            grad_band = torch.matmul(d_matrix.t(), weights).view(b, d4, r1 - r0, n_cols)
            del weights
            grad_cost_w[:, :, lo:lo + h_matrix.shape[1]] += torch.matmul(h_matrix.t(), grad_band)
        i0, i1, lam = w_taps
        grad_cost = torch.zeros_like(cost)
        grad_cost.index_add_(3, i0, grad_cost_w * (1 - lam))
        grad_cost.index_add_(3, i1, grad_cost_w * lam)
        return grad_cost, None, None, None, None, None, None


def soft_argmin(cost: torch.Tensor, max_disp: int, size: tuple[int, int], rows: tuple[int, int],
                cols: tuple[int, int], align_corners: bool, chunk_elements: int = 1 << 24) -> torch.Tensor:
    """Differentiable disparity regression (B, D/4, H/4, W/4) -> (B, rows, cols): the paper's trilinear upsample
    to (D, H, W), softmax over D and expectation, computed band by band in forward and backward."""
    return _SoftArgmin.apply(cost, max_disp, size, rows, cols, align_corners, chunk_elements)


def _mass_near(weights: torch.Tensor, est: torch.Tensor, max_disp: int) -> torch.Tensor:
    """Sum of ``weights`` over the integer disparities d with |d - est| <= CONFIDENCE_RADIUS."""
    r = CONFIDENCE_RADIUS
    width = int(2 * r) + 1
    first = torch.ceil(est - r).long()
    idx = first.unsqueeze(1) + torch.arange(width, device=est.device).view(1, width, 1, 1)
    inside = (idx >= 0) & (idx < max_disp) & ((idx.to(est.dtype) - est.unsqueeze(1)).abs() <= r)
    picked = weights.gather(1, idx.clamp(0, max_disp - 1))
    return (picked * inside).sum(dim=1)


def upsampled_logits(cost: torch.Tensor, max_disp: int, size: tuple[int, int], rows: tuple[int, int],
                     cols: tuple[int, int], align_corners: bool) -> torch.Tensor:
    """The full-resolution logits (B, D, rows, cols) whose softmax :func:`soft_argmin` takes the expectation of.

    For losses on the whole disparity distribution (cross-entropy, ADL); plain autograd through
    ``F.interpolate``, so it keeps the (D, H, W) volume for the backward pass: meant for training crops.
    """
    up = F.interpolate(cost.unsqueeze(1), size=(max_disp, *size), mode="trilinear", align_corners=align_corners)
    return up.squeeze(1)[:, :, rows[0]:rows[1], cols[0]:cols[1]]
