"""Closed-form SSL solutions for the linear map of a kernel backbone.

With the kernel coordinates ``psi`` fixed, ``f = A psi + gamma`` is linear in its
parameters, and two SSL objectives have exact optima given by second moments of
the views:

- spectral contrastive (HaoChen et al. 2021 [1]): with ``C = E[psi psi^T]`` over
  all views and ``C_+`` the symmetrised positive-pair moment, the population loss
  ``-2 tr(A C_+ A^T) + tr((A C A^T)^2)`` is minimised by
  ``A = diag(mu^{1/2}) V_h^T C^{-1/2}``, ``(mu, V)`` the top-h eigenpairs of
  ``C^{-1/2} C_+ C^{-1/2}``; its value there is ``-sum mu_i^2``.
- Barlow Twins in the kernel regime (Kiani et al. 2022 [2]): with the outputs'
  decorrelation imposed exactly (whitened outputs), ``||I - C_cross||_F^2``, the
  Barlow Twins loss at ``lambda = 1``, is minimised by canonical correlation
  analysis of the views: the top-h eigenvectors of ``S^{-1/2} S_+ S^{-1/2}``
  (centred moments); its value there is ``sum (1 - rho_i)^2``.

Both are computed from one streamed pass over the views' coordinates, accumulated
in float64.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] HaoChen et al., 2021, Provable Guarantees for Self-Supervised Deep Learning
  with Spectral Contrastive Loss, arXiv 2106.04156
- [2] Kiani et al., 2022, Joint Embedding Self-Supervised Learning in the Kernel
  Regime, arXiv 2209.14884
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lightly_krepes._inputs import view_batches
from lightly_krepes._validation import check_finite, check_non_negative
from lightly_krepes.backbone.cached_views import CachedViews
from lightly_krepes.backbone.kernel_backbone import KernelBackbone

ClosedFormLoss = Literal["spectral_contrastive", "barlow_twins"]
CLOSED_FORM_LOSSES = ("spectral_contrastive", "barlow_twins")


@dataclass
class ViewMoments:
    """Second moments of p views' coordinates, pooled over views, in float64.

    Attributes:
        mean: Tensor (r,), ``E[psi]`` over all views.
        second: Tensor (r, r), ``E[psi psi^T]`` over all views.
        positive: Tensor (r, r), ``E[psi_a psi_b^T]`` over ordered pairs of
            distinct views of one sample, symmetrised.
        num_samples: n.
        num_views: p.
    """

    mean: Tensor
    second: Tensor
    positive: Tensor
    num_samples: int
    num_views: int

    def augmented(self, bias: bool) -> tuple[Tensor, Tensor]:
        """``(C, C_+)`` of ``[psi; 1]`` (with a bias) or of ``psi``."""
        if not bias:
            return self.second, self.positive
        r = self.mean.shape[0]
        c = self.second.new_empty(r + 1, r + 1)
        c_plus = self.second.new_empty(r + 1, r + 1)
        for out, inner in ((c, self.second), (c_plus, self.positive)):
            out[:r, :r] = inner
            out[:r, r] = self.mean
            out[r, :r] = self.mean
            out[r, r] = 1.0
        return c, c_plus

    def centred(self) -> tuple[Tensor, Tensor]:
        """``(S, S_+)``: the covariance and the positive-pair cross-covariance."""
        outer = torch.outer(self.mean, self.mean)
        return self.second - outer, self.positive - outer


def view_moments(
    backbone: KernelBackbone,
    views: Sequence[Tensor] | Iterable[Sequence[Tensor]] | CachedViews,
    *,
    batch_size: int = 1024,
    progress: bool = False,
) -> ViewMoments:
    """Streams the views through ``backbone.features`` and pools their moments.

    Args:
        backbone: The kernel backbone (its coordinates ``psi`` are used).
        views: A list of p >= 2 tensors of shape (n, ...), row i of each a view of
            sample i; an iterable of such view batches; or :class:`CachedViews`
            holding their coordinates.
        batch_size: Samples per block.
        progress: Show a progress bar.

    Returns:
        The pooled moments.

    Raises:
        ValueError: If fewer than 2 views, views of different lengths, or
            non-finite coordinates.
    """
    cached = isinstance(views, CachedViews)
    batches: Iterable[Sequence[Tensor]]
    if isinstance(views, CachedViews):
        feats_all = views.features
        batches = (
            tuple(feats_all[:, i : i + batch_size].unbind(0))
            for i in range(0, len(views), batch_size)
        )
    else:
        batches = view_batches(views, batch_size)
    r = backbone.linear.in_features
    total = torch.zeros(r, dtype=torch.float64)
    second = torch.zeros(r, r, dtype=torch.float64)
    positive = torch.zeros(r, r, dtype=torch.float64)
    n, p = 0, 0
    with torch.no_grad():
        for batch in tqdm(batches, disable=not progress, desc="moments"):
            if p and len(batch) != p:
                raise ValueError(
                    f"Every view batch must hold the same number of views; got "
                    f"{len(batch)} after {p}."
                )
            p = len(batch)
            feats = [
                (v if cached else backbone.features(v.to(backbone.landmarks)))
                .double()
                .cpu()
                for v in batch
            ]
            for f in feats:
                check_finite(f, "view coordinates")
            summed = torch.stack(feats).sum(0)
            square = torch.stack([f.T @ f for f in feats]).sum(0)
            total += summed.sum(0)
            second += square
            # sum over ordered pairs a != b of f_a^T f_b = S^T S - sum_a f_a^T f_a
            positive += summed.T @ summed - square
            n += int(feats[0].shape[0])
    if n == 0:
        raise ValueError("views hold no samples.")
    mean = total / (n * p)
    second = second / (n * p)
    positive = positive / (n * p * (p - 1))
    positive = 0.5 * (positive + positive.T)
    return ViewMoments(mean, 0.5 * (second + second.T), positive, n, p)


def _inverse_sqrt(matrix: Tensor, rtol: float, ridge: float) -> tuple[Tensor, int]:
    """``(matrix + ridge lam_max I)^{-1/2}`` on the eigenpairs above the cut-off."""
    lam, vecs = torch.linalg.eigh(matrix)
    top = lam.max().clamp_min(torch.finfo(lam.dtype).tiny)
    keep = lam > rtol * top
    vecs = vecs[:, keep]
    return vecs / (lam[keep] + ridge * top).sqrt(), int(keep.sum())


def _top_eigen(
    moment: Tensor, cross: Tensor, out_dim: int, rtol: float, ridge: float, what: str
) -> tuple[Tensor, Tensor]:
    """Top-h eigenpairs ``(mu, A)`` of the whitened cross moment, ``A = V^T C^-1/2``."""
    whiten, rank = _inverse_sqrt(moment, rtol, ridge)
    if out_dim > rank:
        raise ValueError(
            f"out_dim={out_dim} exceeds the rank {rank} of the views' {what}; the "
            f"views do not span {out_dim} directions of the kernel coordinates. Use "
            f"out_dim <= {rank}, more samples or more landmarks."
        )
    inner = whiten.T @ cross @ whiten
    mu, vecs = torch.linalg.eigh(0.5 * (inner + inner.T))
    mu, vecs = mu.flip(0)[:out_dim], vecs.flip(1)[:, :out_dim]
    return mu, vecs.T @ whiten.T


def spectral_contrastive_objective(
    moments: ViewMoments, weight: Tensor, bias: Tensor | None = None
) -> Tensor:
    """Population spectral contrastive loss ``-2 tr(A C_+ A^T) + tr((A C A^T)^2)``.

    Args:
        moments: The views' moments.
        weight: Tensor (h, r), the map A.
        bias: Tensor (h,), gamma, or None.

    Returns:
        Scalar float64 tensor (differentiable in ``weight`` and ``bias``).
    """
    c, c_plus = moments.augmented(bias is not None)
    a = weight.double()
    if bias is not None:
        a = torch.cat([a, bias.double()[:, None]], dim=1)
    gram = a @ c @ a.T
    return -2.0 * torch.trace(a @ c_plus @ a.T) + (gram * gram).sum()


def barlow_twins_objective(
    moments: ViewMoments, weight: Tensor, bias: Tensor | None = None
) -> Tensor:
    """``||I - C_cross||_F^2`` of the outputs whitened by their covariance.

    The Barlow Twins loss at ``lambda = 1`` with decorrelation imposed exactly:
    ``C_cross = W A S_+ A^T W`` with ``W = (A S A^T)^{-1/2}``. The bias does not
    enter (outputs are centred).

    Args:
        moments: The views' moments.
        weight: Tensor (h, r), the map A.
        bias: Ignored (accepted for a uniform signature).

    Returns:
        Scalar float64 tensor (differentiable in ``weight``).
    """
    del bias
    s, s_plus = moments.centred()
    a = weight.double()
    lam, vecs = torch.linalg.eigh(a @ s @ a.T)
    whiten = vecs / lam.clamp_min(torch.finfo(lam.dtype).tiny).sqrt()
    cross = whiten.T @ a @ s_plus @ a.T @ whiten
    eye = torch.eye(cross.shape[0], dtype=cross.dtype)
    value: Tensor = (eye - cross).pow(2).sum()
    return value


def fit_closed_form(
    backbone: KernelBackbone,
    views: Sequence[Tensor] | Iterable[Sequence[Tensor]] | CachedViews,
    loss: ClosedFormLoss = "spectral_contrastive",
    *,
    batch_size: int = 1024,
    rtol: float = 1e-10,
    ridge: float = 0.0,
    progress: bool = False,
) -> KernelBackbone:
    """Sets A and gamma of ``backbone`` to the exact optimum of an SSL objective.

    - ``"spectral_contrastive"``: the minimiser of the population spectral
      contrastive loss (the expectation that
      :class:`~lightly_krepes.loss.SpectralContrastiveLoss` estimates per batch).
    - ``"barlow_twins"``: canonical correlation analysis of the views, the
      minimiser of Barlow Twins' ``||I - C_cross||^2`` over whitened outputs (the
      kernel-regime solution [2]); outputs have zero mean and unit variance.
      Lightly's ``BarlowTwinsLoss`` with its soft redundancy weight (5e-3) can
      reach lower values by letting weak output dimensions copy strong ones; the
      closed form keeps them decorrelated.

    Args:
        backbone: The backbone; its weight and bias are overwritten in place.
        views: A list of p >= 2 tensors of shape (n, ...), row i of each a view of
            sample i (e.g. ``[transform(x) for _ in range(p)]``), an iterable of
            such view batches, or :class:`CachedViews`.
        loss: ``"spectral_contrastive"`` or ``"barlow_twins"``.
        batch_size: Samples per block when streaming the views.
        rtol: Relative eigenvalue cut-off of the moment matrices' inverse root.
        ridge: Relative ridge of the whitening: the moment matrix ``M`` (``C`` or
            the covariance) is whitened by ``(M + ridge * lam_max(M) I)^{-1/2}``.
            0 (default) gives the exact optimum; ``ridge > 0`` is the canonical
            ridge [3] of the same problem, which damps the weak directions that
            exact whitening amplifies (on the training benchmark, 1e-3 raised
            CCA's probe by 0.2-3.4 points; ``docs/closed-form.md``).
        progress: Show a progress bar.

    Returns:
        ``backbone`` itself.

    Raises:
        ValueError: For an unknown loss, fewer than 2 views, views of different
            lengths, ``out_dim`` above the rank of the views' moments, or a
            negative or non-finite ``ridge``.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] HaoChen et al., 2021, arXiv 2106.04156
        - [2] Kiani et al., 2022, arXiv 2209.14884
        - [3] Vinod, 1976, Journal of Econometrics 4(2) (canonical ridge)

    Examples:
        >>> from lightly_krepes.kernels import RBF
        >>> x = torch.randn(200, 4)
        >>> views = [x + 0.1 * torch.randn_like(x) for _ in range(2)]
        >>> backbone = KernelBackbone(RBF(2.0), x[:32], out_dim=3)
        >>> backbone = fit_closed_form(backbone, views, "barlow_twins")
        >>> z = backbone(views[0]).detach()
        >>> bool(z.mean(0).abs().max() < 0.2)
        True
    """
    if loss not in CLOSED_FORM_LOSSES:
        raise ValueError(
            f"No closed form for loss {loss!r}; choose one of {CLOSED_FORM_LOSSES}. "
            f"Train other losses (NTXentLoss, VICRegLoss, BYOL) by gradient descent."
        )
    check_non_negative(ridge, "ridge")
    moments = view_moments(backbone, views, batch_size=batch_size, progress=progress)
    weight, bias = backbone.linear.weight, backbone.linear.bias
    h, r = weight.shape
    if loss == "spectral_contrastive":
        c, c_plus = moments.augmented(bias is not None)
        mu, directions = _top_eigen(c, c_plus, h, rtol, ridge, "second moment")
        new = mu.clamp_min(0.0).sqrt()[:, None] * directions
        new_weight, new_bias = new[:, :r], new[:, r] if bias is not None else None
    else:
        s, s_plus = moments.centred()
        _, new_weight = _top_eigen(s, s_plus, h, rtol, ridge, "covariance")
        new_bias = -new_weight @ moments.mean
    with torch.no_grad():
        weight.copy_(new_weight.to(weight))
        if bias is not None and new_bias is not None:
            bias.copy_(new_bias.to(bias))
    return backbone
