"""Validation of the landmark explanations of an audited SSL encoder (issue 8).

Run from the repository root::

    python benchmarks/explanations [--quick] [--datasets fmnist,cifar10,adult]
        [--seeds 0] [--loss simclr] [--budget-seconds 60] [--damping D]
        [--bandwidths none,0.5]
        [--output benchmarks/results/explanations.json]

The protocol, the targets and what each figure means are in ``PROTOCOL.md``
next to this file. Modules: ``tasks.py`` (data, encoder training, the audit),
``deletion.py``, ``precision.py``, ``fidelity.py``, ``refit.py``
(remove-and-refit), ``sanity.py`` (re-initialised encoder); this file runs them
and prints every figure next to its target.

``--quick`` shrinks everything (8 s training, 500 audit rows, a fixed damping,
5 refit points); it checks that the script runs and is not a result.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch

# Index 1, after this folder: benchmarks/fidelity.py must not shadow fidelity.py.
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

import deletion
import fidelity
import lds
import precision
import refit
import sanity
from _common import DEFAULT_DATA_DIR, REPO_ROOT, format_table, machine_info, write_json
from _ssl_training import Split, make_loss
from tasks import Sizes, Task, audit_task, landmark_counts, prepare, train_encoder

QUICK = Sizes(
    train=2_000, audit=500, test=300, points=200, budget_seconds=8.0,
    damping=1.0, cg_max_iter=20, refit_points=5, lds_subsets=10,
    counterfactual_subsets=8,
)  # fmt: skip


def run_setting(
    task: Task, encoder: Any, loss_name: str, m: int | None, seed: int, sizes: Sizes
) -> dict[str, Any]:
    """Every check for one data set, encoder and number of landmarks."""
    t0 = time.perf_counter()
    audited = audit_task(task, encoder, loss_name, m, seed, sizes, held_out=task.test_x)
    expansion = audited.expansion
    out: dict[str, Any] = {
        "m": audited.m,
        "fit": audited.fit,
        "damping": audited.result.damping,
        "seconds": dict(audited.seconds),
    }
    gen = torch.Generator().manual_seed(seed + 30)
    order = torch.randperm(len(task.test_x), generator=gen)
    points = task.test_x[order[: sizes.points]]
    t = time.perf_counter()
    out["deletion"] = deletion.run(expansion, points, task.audit_x, task.audit_y, seed)
    out["seconds"]["deletion"] = time.perf_counter() - t
    out["precision"] = precision.run(
        expansion, task.test_x, task.test_y, audited.landmark_labels
    )
    t = time.perf_counter()
    out["fidelity"] = fidelity.run(
        expansion,
        audited.result.audited,
        encoder,
        Split(task.audit_x, task.audit_y),
        Split(task.test_x, task.test_y),
        seed,
    )
    out["seconds"]["fidelity"] = time.perf_counter() - t
    t = time.perf_counter()
    out["sanity"] = sanity.run(
        expansion,
        task.make_encoder(seed + 1000),
        task.audit_x,
        points,
        fit=audited.fit,
        seed=seed,
        normalized=sizes.normalized,
        bandwidth=sizes.bandwidth,
    )
    out["seconds"]["sanity"] = time.perf_counter() - t
    if sizes.refit_points > 0:
        out["refit"] = refit.run(
            expansion,
            audited.result,
            make_loss(loss_name),
            task.audit_views,
            encoder,
            task.audit_x,
            points[: sizes.refit_points],
            task.audit_y,
            k=min(10, audited.m // 2),
            max_iter=sizes.cg_max_iter,
            seed=seed,
        )
    if sizes.lds_subsets > 0:
        out["lds"] = lds.run(
            audited.result,
            make_loss(loss_name),
            task.audit_views,
            points,
            num_subsets=sizes.lds_subsets,
            max_iter=sizes.cg_max_iter,
            seed=seed,
            counterfactual_subsets=sizes.counterfactual_subsets,
        )
    out["seconds"]["total"] = time.perf_counter() - t0
    return out


def fmt(value: Any) -> Any:
    """Rounded for the table."""
    if isinstance(value, float):
        return round(value, 4) if math.isfinite(value) else str(value)
    return value


def ci(arm: dict[str, float]) -> str:
    """``mean [lo, hi]``."""
    return f"{arm['mean']:.4f} [{arm['lo']:.4f}, {arm['hi']:.4f}]"


HEADER = ["data", "seed", "m (fit)", "check", "figure", "value", "target"]
DELETION_ARMS = (
    "scores",
    "scores_contrast",
    "random",
    "kernel_nearest",
    "cosine_nearest",
    "paper_IS",
)
PRECISION_FIGURES = (
    "scores",
    "scores_contrast",
    "paper_IS",
    "nearest_representation",
    "nearest_kernel",
    "nearest_input",
    "chance",
)


def table_rows(name: str, seed: int, s: dict[str, Any]) -> list[list[Any]]:
    """One row per figure: data set, seed, m, check, figure, value, target."""
    local = "" if s.get("bandwidth") is None else f", bandwidth {s['bandwidth']:g}"
    tag = [name, seed, f"{s['m']} ({s['fit']}{local})"]
    rows: list[list[Any]] = []
    for key, arms in s["deletion"].items():
        if not key.startswith("k="):
            continue
        for arm in DELETION_ARMS:
            target = ""
            if key == "k=10" and arm == "scores":
                target = ">= 20x random-10, > kernel-nearest-10 (paper .05-.08)"
            if key == "k=10" and arm == "random":
                target = "paper .0001-.001"
            rows.append([*tag, f"deletion {key}", arm, ci(arms[arm]), target])
        rows.append(
            [*tag, f"deletion {key}", "ratio vs random",
             fmt(arms["ratio_vs_random"]["value"]),
             ">= 20" if key == "k=10" else ""]
        )  # fmt: skip
    p = s["precision"]
    for fig in PRECISION_FIGURES:
        target = ">= nearest_representation (paper .872 vs .809 Adult)"
        rows.append([*tag, "precision@1", fig, fmt(p[fig]),
                     target if fig == "scores" else ""])  # fmt: skip
    rows.append([*tag, "precision@1", "distinct top-1 (scores / IS)",
                 f"{p['distinct_top1_scores']} / {p['distinct_top1_IS']} of {p['m']}",
                 ""])  # fmt: skip
    f = s["fidelity"]
    rows.append([*tag, "fidelity", "expansion corr (eta)",
                 f"{f['correlation']:.4f} ({f['eta']:.3g})", ">= 0.99"])  # fmt: skip
    rows.append([*tag, "fidelity", "cancellation (raw)",
                 f"{f['cancellation']:.3g} ({f['cancellation_raw']:.3g})",
                 "report"])  # fmt: skip
    if "gap_points" in f:
        rows.append([*tag, "fidelity", "accuracy gap (points)",
                     fmt(f["gap_points"]), "|gap| <= 0.5"])  # fmt: skip
        rows.append([*tag, "fidelity", "Kendall tau", fmt(f["kendall_tau"]),
                     ">= 0.85"])  # fmt: skip
        rows.append([*tag, "fidelity", "probe acc (surrogate / encoder)",
                     f"{f['surrogate_accuracy']:.4f} / {f['encoder_accuracy']:.4f}",
                     ""])  # fmt: skip
        rows.append([*tag, "fidelity", "representation R2; noise-reference tau",
                     f"{f['representation_r2']:.4f}; {f['noise_reference_tau']:.3f}",
                     "report"])  # fmt: skip
    z = s["sanity"]
    rows.append([*tag, "sanity", "Spearman trained vs re-init",
                 fmt(z["mean_spearman"]), "< 0.5"])  # fmt: skip
    rows.append(
        [
            *tag,
            "sanity",
            "top-1 agree / top-10 overlap",
            f"{z['top1_agreement']:.3f} / {z['top10_overlap']:.3f}",
            "low",
        ]
    )
    r = s.get("refit")
    if r is not None:
        for arm in ("top", "random", "kernel_nearest"):
            rows.append([*tag, f"refit k={r['k']} ({r['points']} pts)", arm,
                         ci(r[arm]), "report as found"])  # fmt: skip
        rows.append([*tag, "refit", "full refit rel. error",
                     fmt(r["full_refit_relative_error"]), "~0"])  # fmt: skip
    d = s.get("lds")
    if d is not None:
        arms = ("scores", "paper_IS", "x_independent", "shuffled", "random")
        for arm in (*arms, "counterfactual") if "counterfactual" in d else arms:
            rows.append(
                [
                    *tag,
                    f"LDS ({d['subsets']} halves)",
                    f"{arm} centred / uncentred",
                    f"{d[arm]['centred']:.3f} / {d[arm]['uncentred']:.3f}",
                    ">= 0.3, > IS" if arm in ("scores", "counterfactual") else "",
                ]
            )
        rows.append([*tag, "LDS", "full-step rel. error",
                     fmt(d["full_step_relative_error"]), "~0"])  # fmt: skip
    return rows


def main() -> None:
    """Parses the options, runs every data set and seed, prints, writes JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--datasets", default="fmnist,adult")
    parser.add_argument("--seeds", default="0")
    parser.add_argument("--loss", default="simclr")
    parser.add_argument("--budget-seconds", type=float, default=None)
    parser.add_argument("--damping", type=float, default=None)
    parser.add_argument("--cg-max-iter", type=int, default=None)
    parser.add_argument("--points", type=int, default=None)
    parser.add_argument("--refit-points", type=int, default=None)
    parser.add_argument("--lds-subsets", type=int, default=None)
    parser.add_argument("--counterfactual-subsets", type=int, default=None)
    parser.add_argument("--m", default="default,sqrt_n")
    parser.add_argument(
        "--unnormalized",
        action="store_true",
        help="build_surrogate(normalized=False): the eNTK without cosine normalisation",
    )
    parser.add_argument(
        "--bandwidths",
        default="none",
        help="build_surrogate(bandwidth=B) per setting, e.g. none,0.5: 'none' is the "
        "eNTK, B the Gaussian kernel of its distance at B times the median "
        "heuristic (a local surrogate); all on the same encoder",
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--data-root", default=str(DEFAULT_DATA_DIR))
    parser.add_argument("--output", default=None)
    args = parser.parse_args()
    try:
        bandwidths = [
            None if b == "none" else float(b) for b in args.bandwidths.split(",")
        ]
    except ValueError:
        parser.error(f"--bandwidths takes 'none' and numbers, got {args.bandwidths}")
    if any(b is not None and not 0 < b < math.inf for b in bandwidths):
        parser.error(f"--bandwidths must be positive numbers, got {args.bandwidths}")
    torch.set_num_threads(args.threads)
    sizes = QUICK if args.quick else Sizes()
    overrides = {
        "budget_seconds": args.budget_seconds,
        "damping": args.damping,
        "cg_max_iter": args.cg_max_iter,
        "points": args.points,
        "refit_points": args.refit_points,
        "lds_subsets": args.lds_subsets,
        "counterfactual_subsets": args.counterfactual_subsets,
        "normalized": False if args.unnormalized else None,
    }
    sizes = replace(sizes, **{k: v for k, v in overrides.items() if v is not None})
    suffix = "_quick" if args.quick else ""
    default = REPO_ROOT / "benchmarks" / "results" / f"explanations{suffix}.json"
    output = Path(args.output or default)
    runs: list[dict[str, Any]] = []
    rows: list[list[Any]] = []
    for name in args.datasets.split(","):
        for seed in (int(s) for s in args.seeds.split(",")):
            task = prepare(name, sizes, seed, args.data_root)
            encoder, _, training = train_encoder(task, args.loss, sizes, seed)
            run: dict[str, Any] = {
                "dataset": name, "seed": seed, "loss": args.loss,
                "training": training, "info": task.info, "settings": {},
            }  # fmt: skip
            counts = landmark_counts(task)
            for label in args.m.split(","):
                for bandwidth in bandwidths:
                    setting = run_setting(
                        task,
                        encoder,
                        args.loss,
                        counts[label],
                        seed,
                        replace(sizes, bandwidth=bandwidth),
                    )
                    setting["bandwidth"] = bandwidth
                    key = (
                        label
                        if bandwidth is None
                        else f"{label}, bandwidth {bandwidth:g}"
                    )
                    run["settings"][key] = setting
                    rows.extend(table_rows(name, seed, setting))
                    print(
                        format_table(HEADER, table_rows(name, seed, setting)),
                        flush=True,
                    )
            runs.append(run)
    print("\nAll figures:")
    print(format_table(HEADER, rows))
    write_json(
        output,
        {
            "benchmark": "explanations",
            "quick": args.quick,
            "sizes": asdict(sizes),
            "machine": machine_info(),
            "runs": runs,
        },
    )
    print(f"\nwrote {output}")


if __name__ == "__main__":
    main()
