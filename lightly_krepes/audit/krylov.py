"""One Krylov space for every damping: Lanczos with multi-shift solves.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Paige, 1972, Computational variants of the Lanczos method for the
  eigenproblem, J. Inst. Math. Appl. 10
- [2] Frommer, Maass, 1999, Fast CG-based methods for Tikhonov-Phillips
  regularization, SIAM J. Sci. Comput. 20(5)
- [3] Saad, 2003, Iterative Methods for Sparse Linear Systems, 2nd ed., SIAM,
  Sections 6.6-6.7
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm


@dataclass
class ShiftedSolves:
    """Solutions of ``(H + sigma I) x = b`` for several shifts from one Krylov space.

    Each shift's solution is the Galerkin solution in the first ``iterations``
    Lanczos vectors, which in exact arithmetic is CG's iterate after as many
    iterations [3]: a shift stops at the first step whose residual is at most
    ``tol`` or whose pivot shows non-positive curvature, as CG would.

    Attributes:
        shifts: The shifts sigma, shape (S,), float64.
        solutions: x_sigma, shape (S, n), float64.
        residuals: Relative residuals ``|b - (H + sigma I) x| / |b|``, shape (S,),
            from the Lanczos recurrence ``|beta_k| |e_k^T y|`` [1].
        iterations: Lanczos steps (= CG iterations) each solution uses, shape (S,).
        converged: Whether the residual reached ``tol``, shape (S,).
        negative_curvature: Whether ``T_j + sigma I`` stopped being positive
            definite, i.e. CG on the shifted system met ``p^T (H + sigma I) p <=
            0``; the solution is then the last positive definite iterate, shape (S,).
    """

    shifts: Tensor
    solutions: Tensor
    residuals: Tensor
    iterations: Tensor
    converged: Tensor
    negative_curvature: Tensor


def _check_shifts(shifts: Tensor | Sequence[float]) -> Tensor:
    values = torch.as_tensor(shifts, dtype=torch.float64).detach().cpu()
    if values.dim() != 1 or values.numel() == 0:
        raise ValueError(
            f"shifts must be a non-empty 1-D sequence of numbers, got shape "
            f"{tuple(values.shape)}; pass e.g. [0.1, 1.0, 10.0]."
        )
    if not bool(torch.isfinite(values).all()):
        raise ValueError(f"shifts must be finite, got {values.tolist()}.")
    return values


def _check_options(tol: float, max_iter: int | None) -> None:
    if not 0 <= tol < 1:
        raise ValueError(f"tol is a relative residual in [0, 1), got {tol}.")
    if max_iter is not None and (int(max_iter) != max_iter or max_iter < 1):
        raise ValueError(f"max_iter must be a positive integer, got {max_iter}.")


class _ShiftRecurrence:
    """The LDL^T factorisation of ``T_k + sigma I`` for all shifts, a step at a time.

    Written by hand: no library offers multi-shift Lanczos, and the recurrence is
    O(S) per step. The pivots ``d_j`` are the reciprocals of CG's step lengths on
    the shifted system [3], so a non-positive pivot is exactly CG's non-positive
    curvature test, and the forward substitution ``L z = |b| e_1`` gives the last
    component ``y_k = z_k / d_k`` of the Galerkin coefficients, hence the residual
    ``|beta_k y_k|``, without solving the k x k system every step. A shift is
    frozen at its first converged or non-positive step, as CG stops there.
    """

    def __init__(self, shifts: Tensor, tol: float, rhs_norm: float) -> None:
        size = shifts.shape[0]
        self.shifts = shifts
        self.tol = tol
        self.rhs_norm = rhs_norm
        self.pivots: list[Tensor] = []
        self.forward: list[Tensor] = []
        self.betas: list[float] = []
        self.iterations = torch.zeros(size, dtype=torch.long)
        self.residuals = torch.ones(size, dtype=torch.float64)
        self.negative = torch.zeros(size, dtype=torch.bool)
        self.converged = torch.zeros(size, dtype=torch.bool)
        if rhs_norm == 0.0:
            # x = 0 solves every shifted system exactly, as in CG.
            self.residuals.zero_()
            self.converged.fill_(True)

    @property
    def done(self) -> Tensor:
        return self.negative | self.converged

    def advance(self, alpha: float, beta: float) -> None:
        """Appends Lanczos step k's diagonal ``alpha_k`` and off-diagonal ``beta_k``."""
        active = ~self.done
        if not self.pivots:
            pivot = alpha + self.shifts
            forward = torch.full_like(self.shifts, self.rhs_norm)
        else:
            previous, beta_prev = self.pivots[-1], self.betas[-1]
            pivot = alpha + self.shifts - beta_prev**2 / previous
            forward = -(beta_prev / previous) * self.forward[-1]
        # `not > 0` so that a NaN pivot counts as a breakdown too.
        accepted = active & (pivot > 0)
        self.negative |= active & ~(pivot > 0)
        # Frozen shifts carry harmless values so that nothing overflows later.
        pivot = torch.where(accepted, pivot, torch.ones_like(pivot))
        forward = torch.where(accepted, forward, torch.zeros_like(forward))
        residual = (beta * forward / pivot).abs() / self.rhs_norm
        self.iterations = torch.where(
            accepted,
            torch.full_like(self.iterations, len(self.pivots) + 1),
            self.iterations,
        )
        self.residuals = torch.where(accepted, residual, self.residuals)
        self.converged |= accepted & (residual <= self.tol)
        self.pivots.append(pivot)
        self.forward.append(forward)
        self.betas.append(beta)

    def coefficients(self) -> Tensor:
        """Back substitution ``D L^T y = z`` in each shift's leading block, (S, k)."""
        steps = len(self.pivots)
        coefficients = torch.zeros(self.shifts.shape[0], steps, dtype=torch.float64)
        following = torch.zeros_like(self.shifts)
        for j in reversed(range(steps)):
            pivot = self.pivots[j]
            value = self.forward[j] / pivot - (self.betas[j] / pivot) * following
            following = torch.where(j < self.iterations, value, torch.zeros_like(value))
            coefficients[:, j] = following
        return coefficients


class Lanczos:
    """Lanczos tridiagonalisation of a symmetric operator, solving many shifts at once.

    From ``q_1 = b / |b|``, k steps build an orthonormal basis ``Q_k`` of the
    Krylov space ``span{b, H b, ..., H^{k-1} b}`` and the tridiagonal ``T_k =
    Q_k^T H Q_k`` with ``H Q_k = Q_k T_k + beta_k q_{k+1} e_k^T`` [1, 3]. Since
    ``(H + sigma I) Q_k = Q_k (T_k + sigma I) + beta_k q_{k+1} e_k^T``, every
    shifted system shares the space [2]: ``x_sigma = Q_k (T_k + sigma I)^{-1} |b|
    e_1`` has residual ``|beta_k| |e_k^T y_sigma|``, and CG on ``H + sigma I``
    would return the same iterate (:meth:`solve_shifted`). One operator
    application per step serves all shifts, where CG per shift would pay one each.
    The eigenvalues of ``T_k`` (Ritz values, :meth:`ritz_values`) estimate H's
    extreme eigenvalues.

    For the audit, ``operator`` is ``v -> objective.hvp(theta, v)`` and ``b =
    -g``; each step is one pass over all batches. The basis is kept and every
    new vector is reorthogonalised against it (twice, classical Gram-Schmidt):
    without it, round-off destroys orthogonality once a Ritz value converges
    [1], giving spurious copies of Ritz values and residual estimates that no
    longer match the true residuals. The cost is fine here: the basis is (k, n)
    with n the number of parameters h (r + 1), independent of the number of rows,
    and k is at most a few hundred, so O(k n) memory and work per step are small
    next to a Hessian-vector product over a million rows.

    Ritz values lie inside the spectrum (Cauchy interlacing), so the smallest errs
    towards zero; and a Krylov space started at g never sees eigenvectors
    orthogonal to g. The latter is harmless for the shifted solves, which live in
    the same space (as CG's do), but ``lambda_min`` of H may be lower than the
    smallest Ritz value: add a margin when shifting by it.

    Args:
        operator: The symmetric operator, mapping a tensor of shape (n,) to one of
            shape (n,) (called with float64 vectors on ``start``'s device).
        start: The right-hand side b, shape (n,); the basis is float64.

    Raises:
        ValueError: If start is not a finite 1-D floating tensor.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Paige, 1972, J. Inst. Math. Appl. 10
        - [2] Frommer, Maass, 1999, SIAM J. Sci. Comput. 20(5)
        - [3] Saad, 2003, Iterative Methods for Sparse Linear Systems, 2nd ed.

    Examples:
        >>> h = torch.diag(torch.tensor([1.0, 2.0, 3.0, 4.0], dtype=torch.float64))
        >>> b = torch.ones(4, dtype=torch.float64)
        >>> lanczos = Lanczos(lambda v: h @ v, b)
        >>> solves = lanczos.run([0.5, 1.0], tol=1e-12, max_iter=10, progress=False)
        >>> eye = torch.eye(4, dtype=torch.float64)
        >>> expected = torch.stack(
        ...     [torch.linalg.solve(h + s * eye, b) for s in (0.5, 1.0)]
        ... )
        >>> torch.allclose(solves.solutions, expected), bool(solves.converged.all())
        (True, True)
        >>> lanczos.num_steps
        4
        >>> [round(v, 8) for v in lanczos.ritz_values().tolist()]
        [1.0, 2.0, 3.0, 4.0]
    """

    def __init__(self, operator: Callable[[Tensor], Tensor], start: Tensor) -> None:
        if not isinstance(start, Tensor) or not start.is_floating_point():
            raise ValueError("start must be a floating-point tensor of shape (n,).")
        if start.dim() != 1 or start.numel() == 0:
            raise ValueError(
                f"start must have shape (n,) with n >= 1, got {tuple(start.shape)}."
            )
        b = start.detach().to(torch.float64)
        if not bool(torch.isfinite(b).all()):
            raise ValueError("start contains NaN or infinite values.")
        self._operator = operator
        self.size = int(b.shape[0])
        self.rhs_norm = float(torch.linalg.vector_norm(b))
        self.alphas: list[float] = []
        self.betas: list[float] = []
        self.hvp_count = 0
        # Zero b: the Krylov space is empty and x = 0 solves every system.
        self.exhausted = self.rhs_norm == 0.0
        self._basis = torch.empty(
            min(self.size, 32), self.size, dtype=torch.float64, device=b.device
        )
        self._basis[0] = b / self.rhs_norm if self.rhs_norm > 0 else b
        self._scale = 0.0

    @property
    def num_steps(self) -> int:
        """Lanczos steps taken, k (one operator application each)."""
        return len(self.alphas)

    @property
    def basis(self) -> Tensor:
        """The orthonormal basis ``Q_k``, shape (k, n), one vector per row."""
        return self._basis[: self.num_steps]

    def tridiagonal(self) -> Tensor:
        """``T_k = Q_k^T H Q_k``, shape (k, k), float64 on the CPU."""
        alphas = torch.tensor(self.alphas, dtype=torch.float64)
        betas = torch.tensor(self.betas[: self.num_steps - 1], dtype=torch.float64)
        return torch.diag(alphas) + torch.diag(betas, 1) + torch.diag(betas, -1)

    def ritz_values(self) -> Tensor:
        """Eigenvalues of ``T_k`` in ascending order, shape (k,) (empty for k = 0).

        They lie in ``[lambda_min(H), lambda_max(H)]``; the extreme ones converge
        first, from inside.
        """
        values: Tensor = torch.linalg.eigvalsh(self.tridiagonal())
        return values

    def _step(self) -> None:
        k = self.num_steps
        q = self._basis[k]
        w = self._operator(q)
        if not isinstance(w, Tensor) or w.shape != q.shape:
            raise ValueError(
                f"operator must map a tensor of shape {tuple(q.shape)} to one of the "
                f"same shape, got {getattr(w, 'shape', type(w))}."
            )
        w = w.detach().to(q)
        self.hvp_count += 1
        alpha = float(q @ w)
        if not math.isfinite(alpha):
            raise ValueError("The operator returned NaN or infinite values.")
        w = w - alpha * q
        if k > 0:
            w = w - self.betas[-1] * self._basis[k - 1]
        basis = self._basis[: k + 1]
        for _ in range(2):  # "twice is enough" for classical Gram-Schmidt
            w = w - basis.T @ (basis @ w)
        beta = float(torch.linalg.vector_norm(w))
        self._scale = max(
            self._scale, abs(alpha) + beta + (self.betas[-1] if k > 0 else 0.0)
        )
        self.alphas.append(alpha)
        self.betas.append(beta)
        # An invariant subspace (or the whole space) is reached: T_k holds all of
        # H that b can see, and the shifted solutions are exact.
        if k + 1 == self.size or beta <= self.size * 1e-15 * self._scale:
            self.exhausted = True
            return
        if k + 1 == self._basis.shape[0]:
            grown = torch.empty(
                min(2 * self._basis.shape[0], self.size),
                self.size,
                dtype=self._basis.dtype,
                device=self._basis.device,
            )
            grown[: k + 1] = self._basis
            self._basis = grown
        self._basis[k + 1] = w / beta

    def extend(self, num_steps: int, *, progress: bool = False) -> None:
        """Takes up to ``num_steps`` more steps (fewer once the space is exhausted).

        Args:
            num_steps: Number of steps, a positive integer.
            progress: Show a progress bar.

        Raises:
            ValueError: If num_steps is not a positive integer.
        """
        if int(num_steps) != num_steps or num_steps < 1:
            raise ValueError(f"num_steps must be a positive integer, got {num_steps}.")
        with tqdm(total=int(num_steps), disable=not progress, desc="Lanczos") as bar:
            for _ in range(int(num_steps)):
                if self.exhausted:
                    break
                self._step()
                bar.update(1)

    def _recurrence(
        self, shifts: Tensor, tol: float, max_iter: int | None
    ) -> _ShiftRecurrence:
        recurrence = _ShiftRecurrence(shifts, tol, self.rhs_norm)
        steps = self.num_steps if max_iter is None else min(self.num_steps, max_iter)
        for j in range(steps):
            if bool(recurrence.done.all()):
                break
            recurrence.advance(self.alphas[j], self.betas[j])
        return recurrence

    def _finish(self, recurrence: _ShiftRecurrence) -> ShiftedSolves:
        coefficients = recurrence.coefficients().to(self._basis.device)
        solutions = coefficients @ self._basis[: coefficients.shape[1]]
        return ShiftedSolves(
            shifts=recurrence.shifts,
            solutions=solutions,
            residuals=recurrence.residuals,
            iterations=recurrence.iterations,
            converged=recurrence.converged,
            negative_curvature=recurrence.negative,
        )

    def solve_shifted(
        self,
        shifts: Tensor | Sequence[float],
        *,
        tol: float = 0.0,
        max_iter: int | None = None,
    ) -> ShiftedSolves:
        """Solves ``(H + sigma I) x = b`` for every shift in the current space.

        Takes no new steps. Each shift uses the first ``j`` steps with ``j`` the
        first whose residual is at most ``tol`` (``tol = 0`` uses all of them),
        the step before ``T_j + sigma I`` stops being positive definite, or
        ``min(k, max_iter)``: CG's iterate on the shifted system.

        Args:
            shifts: The shifts sigma, shape (S,), finite.
            tol: Relative residual at which a shift stops, in [0, 1).
            max_iter: Most steps a shift may use; None for all k.

        Returns:
            The solutions, shape (S, n), with residuals and flags.

        Raises:
            ValueError: If shifts is empty or not finite, or tol or max_iter is
                invalid.
        """
        values = _check_shifts(shifts)
        _check_options(tol, max_iter)
        return self._finish(self._recurrence(values, tol, max_iter))

    def run(
        self,
        shifts: Tensor | Sequence[float],
        *,
        tol: float,
        max_iter: int,
        progress: bool = True,
    ) -> ShiftedSolves:
        """Extends the space until every shift is solved, then solves them.

        Stops when each shift's residual is at most ``tol`` or it met
        non-positive curvature, when the space is exhausted, or after
        ``max_iter`` steps in all (steps already taken count).

        Args:
            shifts: The shifts sigma, shape (S,), finite.
            tol: Relative residual at which a shift stops, in [0, 1).
            max_iter: Most steps in all, a positive integer.
            progress: Show a progress bar ("Lanczos") over the steps.

        Returns:
            The solutions, as :meth:`solve_shifted` with the same ``tol`` and
            ``max_iter`` would return them.

        Raises:
            ValueError: If shifts is empty or not finite, or tol or max_iter is
                invalid.
        """
        values = _check_shifts(shifts)
        _check_options(tol, max_iter)
        recurrence = self._recurrence(values, tol, max_iter)
        with tqdm(
            total=int(max_iter),
            initial=min(self.num_steps, int(max_iter)),
            disable=not progress,
            desc="Lanczos",
        ) as bar:
            while (
                not bool(recurrence.done.all())
                and not self.exhausted
                and self.num_steps < max_iter
            ):
                self._step()
                recurrence.advance(self.alphas[-1], self.betas[-1])
                active = ~recurrence.done
                worst = recurrence.residuals[active] if bool(active.any()) else None
                bar.update(1)
                bar.set_postfix(
                    solved=f"{int((~active).sum())}/{values.numel()}",
                    residual="-" if worst is None else f"{float(worst.max()):.2e}",
                )
        return self._finish(recurrence)
