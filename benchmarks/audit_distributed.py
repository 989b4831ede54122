"""The audit on 2 processes against 1: wall time and agreement of the steps.

Run from the repository root, after ``benchmarks/audit_scale.py`` has built its
inputs (Adult-1M rows and the trained encoder in ``--inputs``)::

    python benchmarks/audit_distributed.py --rows 100000 --threads 2
    torchrun --nproc_per_node 2 benchmarks/audit_distributed.py --rows 100000 \\
        --threads 1

Each run is ``lightly_krepes.audit.audit_encoder`` on the first n rows (SCARF
views seeded by global batch index, m = ceil(sqrt n), a pool of 20 m rows, the
library's curvature subsample and refinement, fixed damping ``--damping`` so
that both runs take the same step). Rank 0 prints the wall time and writes
``delta_alpha`` and the timing to ``--output`` (JSON beside a ``.pt``); with
``--compare`` it prints the relative difference from an earlier run's step.
On one 2-core machine the two processes share the cores (1 thread each against
2 threads in one process), so the ratio measures the cost of the all-reduces
and duplicated work, not a speed-up.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, write_json
from _ssl_training import SSLModel, make_head, tabular_mlp
from lightly.loss import NTXentLoss

from lightly_krepes.audit import audit_encoder
from lightly_krepes.transforms import TabularMultiViewTransform

DEFAULT_INPUTS = REPO_ROOT / "benchmarks" / "results" / "audit_scale_cache" / "inputs"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    # Not "--n": torchrun reads an abbreviation of its own options from it.
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--damping", type=float, default=1.0)
    parser.add_argument("--inputs", default=str(DEFAULT_INPUTS))
    parser.add_argument("--output", default=None)
    parser.add_argument("--compare", default=None, help="an earlier run's .pt step")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        dist.init_process_group("gloo")
    rank = dist.get_rank() if world > 1 else 0
    inputs = Path(args.inputs)
    rows = np.load(inputs / "features.npy", mmap_mode="r")
    data = torch.from_numpy(np.array(rows[: args.rows]))
    groups = json.loads((inputs / "groups.json").read_text())
    model = SSLModel(tabular_mlp(data.shape[1], 64, 0), make_head("simclr", 64))
    model.load_state_dict(torch.load(inputs / "encoder.pt", weights_only=True))
    model.eval()
    # No seed of its own: the global generator, which audit_encoder seeds per
    # global batch, so that 1 and 2 processes draw the same views.
    transform = TabularMultiViewTransform(
        data[:32_768], num_views=2, corruption_rate=0.6, groups=groups
    )
    m = math.ceil(math.sqrt(args.rows))
    start = time.perf_counter()
    result = audit_encoder(
        model.backbone,
        data,
        NTXentLoss(),
        transform=transform,
        num_landmarks=m,
        pool_size=min(args.rows, max(10_000, 20 * m)),
        damping=args.damping,
        head=model.head,
        max_iter=50,
        progress=rank == 0,
    )
    seconds = time.perf_counter() - start
    if rank == 0:
        step = result.step.delta_alpha.detach()
        name = f"audit_distributed_n{args.rows}_w{world}"
        output = Path(args.output or REPO_ROOT / "benchmarks" / "results" / name)
        output.parent.mkdir(parents=True, exist_ok=True)
        torch.save(step, output.with_suffix(".pt"))
        payload = {
            "benchmark": "audit_distributed",
            "n": args.rows,
            "num_landmarks": m,
            "world_size": world,
            "threads_per_process": args.threads,
            "seconds": seconds,
            "damping": result.damping,
            "loss_before": result.step.loss_before,
            "loss_after": result.step.loss_after,
        }
        if args.compare:
            other = torch.load(args.compare, weights_only=True)
            payload["relative_difference"] = float(
                (step.double() - other.double()).norm() / other.double().norm()
            )
        print(json.dumps(payload, indent=1))
        write_json(output.with_suffix(".json"), payload)
    if world > 1:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main())
