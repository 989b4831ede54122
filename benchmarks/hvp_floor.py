"""The full-data Hessian-vector product of the audit against its GEMM floor.

Run from the repository root::

    python benchmarks/hvp_floor.py [--rows 8192] [--num-landmarks 1000]
        [--threads 2] [--batches-at 3907]
        [--output benchmarks/results/hvp_floor.json]

**Protocol.** The audit objective of ``benchmarks/audit_scale.py`` at its 1M-row
shapes: Adult rows (``adult.data``), the MLP 108-256-256-64 (ReLU) encoder and
Lightly's SimCLR head 64-512-128 (untrained: the cost depends on the shapes
only), m landmarks, two Gaussian-noise views, NTXent on batches of 256, float64.
One exact full-data product (``AuditObjective.hvp(..., subsample=False)``,
graphs rebuilt per batch, as the refinement runs it) is timed and profiled with
``torch.profiler(with_flops=True)`` for the FLOPs of its matrix products; the
anchor is a 2,048-square float64 GEMM timed in the same run. Printed: FLOPs per
batch, the GEMM rate, the floor (FLOPs / rate) and the measured time per batch,
their ratio, and both extrapolated to ``--batches-at`` batches (3,907 at 1M).

**Why** (issue 10): the 1 % step needs about six full-data passes at 1M rows;
this gives their least possible cost on the machine.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import DEFAULT_DATA_DIR, REPO_ROOT, machine_info, write_json
from _ssl_training import make_head, tabular_mlp
from lightly.loss import NTXentLoss

from lightly_krepes.audit import AuditObjective, build_surrogate, view_batches
from lightly_krepes.data import load_adult


def gemm_rate(size: int = 2048, repeats: int = 5) -> float:
    """float64 GEMM FLOP/s of this machine at the current thread count."""
    a = torch.randn(size, size, dtype=torch.float64)
    b = torch.randn(size, size, dtype=torch.float64)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - start)


def main() -> None:
    """Parses the options, measures, prints, writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=8192)
    parser.add_argument("--num-landmarks", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches-at", type=int, default=3907)
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_DIR))
    parser.add_argument(
        "--output", default=str(REPO_ROOT / "benchmarks/results/hvp_floor.json")
    )
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = load_adult("train", args.data_root, max_samples=args.rows).features.float()
    encoder = tabular_mlp(rows.shape[1], 64, seed=0).eval()
    head = make_head("simclr", 64).eval()
    surrogate = build_surrogate(
        encoder, rows, num_landmarks=args.num_landmarks, progress=False
    )
    generator = torch.Generator().manual_seed(1)
    views = [rows + 0.1 * torch.randn(rows.shape, generator=generator) for _ in "ab"]
    objective = AuditObjective(
        surrogate,
        NTXentLoss(),
        view_batches(views, 256),
        head=head,
        curvature_rows=None,
        progress=False,
    )
    # At 1M rows the batches outside the curvature subsample rebuild their
    # gradient graphs on every full-data product: no graph cache here either.
    objective.graph_cache_bytes = 0
    theta = objective.initial_parameters()
    vector = torch.randn(theta.shape, generator=generator, dtype=theta.dtype)
    objective.hvp(theta, vector, subsample=False)  # warm-up
    with profile(activities=[ProfilerActivity.CPU], with_flops=True) as prof:
        objective.hvp(theta, vector, subsample=False)
    batches = objective.num_batches
    flops = sum(event.flops for event in prof.key_averages()) / batches
    start = time.perf_counter()
    objective.hvp(theta, vector, subsample=False)
    seconds = (time.perf_counter() - start) / batches
    rate = gemm_rate()
    floor = flops / rate
    result = {
        "rows": args.rows,
        "num_landmarks": args.num_landmarks,
        "rank": objective.rank,
        "batches": batches,
        "matmul_gflop_per_batch": flops / 1e9,
        "gemm_gflops": rate / 1e9,
        "floor_ms_per_batch": 1e3 * floor,
        "measured_ms_per_batch": 1e3 * seconds,
        "measured_over_floor": seconds / floor,
        "batches_at": args.batches_at,
        "floor_seconds_at": floor * args.batches_at,
        "measured_seconds_at": seconds * args.batches_at,
    }
    print(
        f"matrix products {result['matmul_gflop_per_batch']:.3f} GFLOP per batch; "
        f"float64 GEMM {result['gemm_gflops']:.1f} GFLOP/s -> floor "
        f"{result['floor_ms_per_batch']:.1f} ms per batch; measured "
        f"{result['measured_ms_per_batch']:.1f} ms "
        f"({result['measured_over_floor']:.1f}x the floor)\n"
        f"at {args.batches_at} batches: floor "
        f"{result['floor_seconds_at']:.0f} s, measured "
        f"{result['measured_seconds_at']:.0f} s per full-data product"
    )
    write_json(Path(args.output), {"result": result, "machine": machine_info()})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
