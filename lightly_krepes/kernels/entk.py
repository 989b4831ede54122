"""Empirical neural tangent kernel of a frozen network.

- [0] KREPES, 2025, arXiv 2509.24467
- [1] Mohamadi, Bae, Sutherland, 2023, A Fast, Well-Founded Approximation to the
  Empirical Neural Tangent Kernel (pNTK), arXiv 2206.12543
- [2] Novak et al., 2022, Fast Finite Width Neural Tangent Kernel (structured
  derivatives), arXiv 2206.08720
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from lightly_krepes.kernels.base import FeatureKernel
from lightly_krepes.kernels.features import Factor, KernelFeatures

_FAST_LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d)
_RANDOM_IN_TRAINING = (nn.modules.dropout._DropoutNd,)


@dataclass
class _Capture:
    module_name: str
    inputs: Tensor
    output: Tensor


def _capture_hook(module: nn.Module, inputs: tuple[Any, ...], output: Tensor) -> Any:
    # State lives on the module, not in a closure, so that deep copies of the kernel
    # (BYOL's momentum encoder) capture into their own lists.
    captures: list[_Capture] | None = getattr(module, "_krepes_capture", None)
    if captures is None:
        return None
    captures.append(_Capture(module._krepes_name, inputs[0].clone(), output))  # type: ignore[arg-type]
    # Later in-place ops (ReLU(inplace=True)) act on the clone, so the captured
    # output keeps the layer's own autograd history.
    return output.clone()


def _check_frozen_modes(model: nn.Module) -> None:
    for name, module in model.named_modules():
        label = name or type(model).__name__
        if isinstance(module, nn.modules.batchnorm._BatchNorm) and module.training:
            raise ValueError(
                f"Module '{label}' ({type(module).__name__}) is in train mode. The "
                f"empirical NTK is defined per example, so BatchNorm must use its "
                f"running statistics: call model.eval() before building the kernel."
            )
        if isinstance(module, _RANDOM_IN_TRAINING) and module.training and module.p > 0:
            raise ValueError(
                f"Module '{label}' ({type(module).__name__}) is in train mode, which "
                f"would make the kernel random: call model.eval() before building "
                f"the kernel."
            )


def _freeze_copy(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """Deep-copies ``model`` and turns its floating parameters into buffers.

    The copy then carries the network's weights through ``state_dict``, ``.to()``
    and ``deepcopy`` but exposes no parameters, so an optimiser built from a parent
    module's ``parameters()`` never sees them. Tied parameters stay tied.
    """
    frozen = copy.deepcopy(model)
    names = [n for n, p in frozen.named_parameters() if p.is_floating_point()]
    converted: dict[int, Tensor] = {}
    for module in frozen.modules():
        for pname, param in list(module._parameters.items()):
            if param is None:
                continue
            tensor = converted.setdefault(id(param), param.detach().clone())
            del module._parameters[pname]
            module.register_buffer(pname, tensor)
    frozen.requires_grad_(False)
    return frozen, names


def _conv_patches(module: nn.Conv1d | nn.Conv2d, x: Tensor) -> Tensor:
    """Unfolds a convolution's input into patches, shape (n, positions, c_in * k)."""
    if isinstance(module, nn.Conv1d):
        # A 1-d convolution is a 2-d one over an image of height 1.
        x = x.unsqueeze(2)
        kernel_size = (1, module.kernel_size[0])
        stride = (1, module.stride[0])
        dilation = (1, module.dilation[0])
    else:
        kernel_size = (module.kernel_size[0], module.kernel_size[1])
        stride = (module.stride[0], module.stride[1])
        dilation = (module.dilation[0], module.dilation[1])
    padding: tuple[int, int] = (0, 0)
    if module.padding == "same":
        # F.unfold pads symmetrically; "same" may need one more pixel on the right,
        # exactly as the convolution itself pads.
        widths: list[int] = []
        for k, d in zip(reversed(kernel_size), reversed(dilation), strict=True):
            total = d * (k - 1)
            widths += [total // 2, total - total // 2]
        x = F.pad(x, widths)
    elif not isinstance(module.padding, str):
        pads = [int(p) for p in module.padding]
        padding = (0, pads[0]) if isinstance(module, nn.Conv1d) else (pads[0], pads[1])
    patches = F.unfold(
        x, kernel_size, dilation=dilation, padding=padding, stride=stride
    )
    return patches.transpose(1, 2)


class EmpiricalNTK(FeatureKernel):
    """Empirical neural tangent kernel ``k(x, y) = <d s(x)/d theta, d s(y)/d theta>``.

    The network is copied and frozen at construction; gradients are taken with
    respect to all of its floating parameters. Its outputs are flattened to ``O``
    values per sample and reduced to scalars ``s``:

    - ``output="pntk"`` (default): the pseudo-NTK, ``s = sum_o f_o / sqrt(O)``, so
      ``k = (1/O) sum_{o,o'} <J_o(x), J_o'(y)>`` [1].
    - ``output="trace"``: ``k = (1/O) sum_o <J_o(x), J_o(y)>``, exact with O
      backward passes, or estimated with ``num_probes`` seeded Rademacher vectors
      (Hutchinson); the probes are fixed at construction so the estimate is itself
      a positive semi-definite kernel.

    Per-sample gradients come from one batched forward pass and one backward pass
    per probe: linear and convolutional layers record their inputs and the
    back-propagated signals, and their gradient inner products are either
    materialised or contracted in factored form
    ``(delta_x . delta_y)(a_x . a_y)``, whichever is cheaper per layer [2]. All
    other parameters (normalisation layers, embeddings, tied weights, custom
    modules) fall back to ``torch.func`` per-sample gradients, so every network is
    handled exactly. The kernel works under ``torch.no_grad()`` and stays
    differentiable with respect to its inputs when gradients are enabled (double
    backward), so Captum's gradient methods run through it.

    Batches must not couple samples: BatchNorm must be in eval mode, which is
    checked.

    Args:
        model: The network; inputs are one sample per row.
        output: ``"pntk"`` or ``"trace"``.
        num_probes: With ``output="trace"``, the number of Rademacher probes; None
            computes the trace exactly.
        seed: Seed of the probes.
        structured: Force the factored (True) or materialised (False) contraction
            for every fast-path layer; None picks the cheaper one per layer.
        chunk_size: Samples per forward/backward pass.

    References:
        - [0] KREPES, 2025, arXiv 2509.24467
        - [1] Mohamadi, Bae, Sutherland, 2023, arXiv 2206.12543
        - [2] Novak et al., 2022, arXiv 2206.08720

    Examples:
        >>> net = torch.nn.Sequential(
        ...     torch.nn.Linear(4, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)
        ... )
        >>> kernel = EmpiricalNTK(net)
        >>> K = kernel(torch.randn(5, 4))
        >>> K.shape
        torch.Size([5, 5])
    """

    def __init__(
        self,
        model: nn.Module,
        output: Literal["pntk", "trace"] = "pntk",
        num_probes: int | None = None,
        seed: int = 0,
        structured: bool | None = None,
        chunk_size: int = 256,
    ) -> None:
        super().__init__(chunk_size=chunk_size)
        if not isinstance(model, nn.Module):
            raise TypeError(
                f"model must be a torch.nn.Module, got {type(model).__name__}."
            )
        if output not in ("pntk", "trace"):
            raise ValueError(f"output must be 'pntk' or 'trace', got {output!r}.")
        if num_probes is not None and (output != "trace" or num_probes < 1):
            raise ValueError(
                "num_probes must be a positive integer and is only used with "
                f"output='trace' (got num_probes={num_probes}, output={output!r})."
            )
        _check_frozen_modes(model)
        self.model, self._param_names = _freeze_copy(model)
        if not self._param_names:
            raise ValueError(
                "The model has no floating parameters, so its empirical NTK is zero."
            )
        self.output = output
        self.num_probes = num_probes
        self.seed = seed
        self.structured = structured
        self._fast_modules = self._find_fast_modules()
        self._directions_cache: dict[tuple[int, torch.dtype, str], Tensor] = {}
        for name in self._fast_modules:
            module = self.model.get_submodule(name)
            module.__dict__["_krepes_name"] = name
            module.__dict__["_krepes_capture"] = None
            module.register_forward_hook(_capture_hook)

    # -- configuration ---------------------------------------------------------------

    def train(self, mode: bool = True) -> EmpiricalNTK:
        # The network is frozen in the mode it was built in: a parent's .train()
        # must not switch its BatchNorm layers to batch statistics.
        self.training = mode
        return self

    @property
    def dtype(self) -> torch.dtype:
        """Floating dtype of the network's parameters."""
        return self._param(self._param_names[0]).dtype

    @property
    def device(self) -> torch.device:
        """Device of the network's parameters."""
        return self._param(self._param_names[0]).device

    @property
    def num_parameters(self) -> int:
        """Number of scalar parameters the gradients are taken with respect to."""
        return sum(self._param(n).numel() for n in self._param_names)

    @property
    def fallback_parameters(self) -> list[str]:
        """Names of the parameters handled by ``torch.func`` per-sample gradients."""
        covered = {f"{m}.{p}" for m in self._fast_modules for p in ("weight", "bias")}
        return [n for n in self._param_names if n not in covered]

    def _param(self, name: str) -> Tensor:
        tensor = self.model.get_buffer(name)
        return tensor

    def _find_fast_modules(self) -> list[str]:
        owners: dict[int, int] = {}
        for module in self.model.modules():
            for tensor in module._buffers.values():
                if tensor is not None:
                    owners[id(tensor)] = owners.get(id(tensor), 0) + 1
        params = set(self._param_names)
        fast = []
        for name, module in self.model.named_modules():
            if not isinstance(module, _FAST_LAYERS):
                continue
            if isinstance(module, nn.Conv1d | nn.Conv2d) and (
                module.groups != 1 or module.padding_mode != "zeros"
            ):
                continue
            tensors = [module.weight] + (
                [module.bias] if module.bias is not None else []
            )
            pnames = [f"{name}.weight"] + (
                [f"{name}.bias"] if module.bias is not None else []
            )
            if all(p in params for p in pnames) and all(
                owners.get(id(t), 0) == 1 for t in tensors
            ):
                fast.append(name)
        return fast

    def _directions(self, num_outputs: int) -> Tensor:
        """Output directions ``v_p``: ``k = sum_p <grad v_p.f(x), grad v_p.f(y)>``."""
        key = (num_outputs, self.dtype, str(self.device))
        if key not in self._directions_cache:
            o = num_outputs
            if self.output == "pntk":
                v = torch.ones(1, o, dtype=torch.float64) / math.sqrt(o)
            elif self.num_probes is None:
                v = torch.eye(o, dtype=torch.float64) / math.sqrt(o)
            else:
                gen = torch.Generator().manual_seed(self.seed)
                signs = torch.randint(0, 2, (self.num_probes, o), generator=gen)
                v = (2.0 * signs - 1.0).double() / math.sqrt(o * self.num_probes)
            self._directions_cache[key] = v.to(self.dtype).to(self.device)
        return self._directions_cache[key]

    # -- features --------------------------------------------------------------------

    def _check_input(self, x: Tensor) -> None:
        if x.dtype != self.dtype:
            raise TypeError(
                f"The network's parameters are {self.dtype} but the inputs are "
                f"{x.dtype}. Cast the inputs with x.to({self.dtype}) or build the "
                f"kernel from model.to({x.dtype})."
            )
        if x.device != self.device:
            raise ValueError(
                f"The network is on {self.device} but the inputs are on {x.device}. "
                f"Move the inputs (x.to('{self.device}')) or the kernel (.to())."
            )

    def _named_tensors(self, requires_grad: set[str]) -> dict[str, Tensor]:
        tensors: dict[str, Tensor] = {}
        for name, tensor in self.model.named_buffers():
            t = tensor.detach()
            tensors[name] = t.requires_grad_() if name in requires_grad else t
        return tensors

    def _run_model(self, tensors: dict[str, Tensor], x: Tensor) -> Tensor:
        try:
            out = functional_call(self.model, tensors, (x,))
        except RuntimeError as error:
            raise ValueError(
                f"The network failed on inputs of shape {tuple(x.shape)} (one sample "
                f"per row): {error}"
            ) from error
        if not isinstance(out, Tensor):
            raise TypeError(
                f"The network must return a tensor, got {type(out).__name__}. Wrap "
                f"it so that it returns the representation tensor."
            )
        return out.reshape(out.shape[0], -1)

    def _features(self, x: Tensor) -> KernelFeatures:
        self._check_input(x)
        need_graph = torch.is_grad_enabled() and x.requires_grad
        with torch.enable_grad():
            feats = self._compute_features(x, need_graph)
        return feats if need_graph else feats.detach()

    def _compute_features(self, x: Tensor, need_graph: bool) -> KernelFeatures:
        dense: list[Tensor] = []
        factors: list[Factor] = []
        captures, out = self._forward_with_capture(x)
        directions = self._directions(out.shape[1])
        num_probes = directions.shape[0]
        outputs = [c.output for c in captures]
        for p in range(num_probes):
            if captures:
                scalar = (out * directions[p]).sum()
                deltas = torch.autograd.grad(
                    scalar,
                    outputs,
                    retain_graph=need_graph or p + 1 < num_probes,
                    create_graph=need_graph,
                    allow_unused=True,
                )
                for capture, delta in zip(captures, deltas, strict=True):
                    self._layer_features(capture, delta, dense, factors)
        fallback = self.fallback_parameters
        if fallback:
            dense.extend(self._fallback_gradients(x, directions, fallback, need_graph))
        return KernelFeatures(
            dense=torch.cat(dense, dim=1) if dense else None, factors=tuple(factors)
        )

    def _forward_with_capture(self, x: Tensor) -> tuple[list[_Capture], Tensor]:
        while True:
            fast_params = {
                f"{m}.{p}" for m in self._fast_modules for p in ("weight", "bias")
            }
            captures: list[_Capture] = []
            modules = [self.model.get_submodule(m) for m in self._fast_modules]
            for module in modules:
                module.__dict__["_krepes_capture"] = captures
            try:
                out = self._run_model(self._named_tensors(fast_params), x)
            finally:
                for module in modules:
                    module.__dict__["_krepes_capture"] = None
            counts: dict[str, int] = {}
            for c in captures:
                counts[c.module_name] = counts.get(c.module_name, 0) + 1
            # A layer called twice (or never) has a gradient that is not one
            # activation-signal product: hand its parameters to the fallback.
            irregular = [m for m in self._fast_modules if counts.get(m, 0) != 1]
            if not irregular:
                return captures, out
            self._fast_modules = [m for m in self._fast_modules if m not in irregular]

    def _layer_features(
        self,
        capture: _Capture,
        delta: Tensor | None,
        dense: list[Tensor],
        factors: list[Factor],
    ) -> None:
        module = self.model.get_submodule(capture.module_name)
        n = capture.inputs.shape[0]
        if isinstance(module, nn.Conv1d | nn.Conv2d):
            a = _conv_patches(module, capture.inputs)
            b_shape = capture.output.shape
            signal = (
                torch.zeros_like(capture.output) if delta is None else delta
            ).reshape(n, b_shape[1], -1)
            b = signal.transpose(1, 2)
        else:
            a = capture.inputs.reshape(n, -1, capture.inputs.shape[-1])
            signal = torch.zeros_like(capture.output) if delta is None else delta
            b = signal.reshape(n, -1, signal.shape[-1])
        if getattr(module, "bias", None) is not None:
            a = torch.cat([a, a.new_ones(a.shape[0], a.shape[1], 1)], dim=2)
        factor = Factor(a=a, b=b)
        positions, d_a, d_b = a.shape[1], a.shape[2], b.shape[2]
        use_factored = self.structured
        if use_factored is None:
            use_factored = positions * positions * (d_a + d_b) < d_a * d_b
        if use_factored:
            factors.append(factor)
        else:
            dense.append(factor.materialize())

    def _fallback_gradients(
        self, x: Tensor, directions: Tensor, names: list[str], need_graph: bool
    ) -> Iterator[Tensor]:
        """Per-sample gradients of the parameters the fast path does not cover."""
        constants = {n: t.detach() for n, t in self.model.named_buffers()}
        if need_graph:
            # vmap(grad) composed with an outer backward pass returns wrong input
            # gradients through LayerNorm (torch 2.15), so the differentiable path
            # loops over samples with plain autograd.
            for v in directions:
                rows = []
                for sample in x:
                    params = {n: constants[n].clone().requires_grad_() for n in names}
                    out = self._run_model({**constants, **params}, sample[None])
                    sample_grads = torch.autograd.grad(
                        (out.reshape(-1) * v).sum(),
                        list(params.values()),
                        create_graph=True,
                        allow_unused=True,
                        materialize_grads=True,
                    )
                    rows.append(torch.cat([g.reshape(-1) for g in sample_grads]))
                yield torch.stack(rows)
            return

        selected = {n: constants[n] for n in names}

        def scalar(params: dict[str, Tensor], sample: Tensor, v: Tensor) -> Tensor:
            out: Tensor = functional_call(
                self.model, {**constants, **params}, (sample[None],)
            )
            return (out.reshape(-1) * v).sum()

        per_sample = vmap(grad(scalar), in_dims=(None, 0, None))
        for v in directions:
            grads: dict[str, Tensor] = per_sample(selected, x, v)
            yield torch.cat([grads[n].reshape(x.shape[0], -1) for n in names], dim=1)

    def extra_repr(self) -> str:
        probes = f", num_probes={self.num_probes}" if self.num_probes else ""
        return f"output={self.output!r}{probes}, parameters={self.num_parameters}"
