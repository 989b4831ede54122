"""The KREPES audit at scale: Adult-1M, an MLP encoder, n = 10k .. 1M on one machine.

Run from the repository root::

    python benchmarks/audit_scale.py [--quick] [--sizes 10000,100000,1000000]
        [--num-landmarks 1000] [--threads 2] [--cache-dir DIR]
        [--output benchmarks/results/audit_scale.json]

**Protocol** (CPU, float32 kernel, float64 objective, seeded):

- *Data.* Adult-1M (:func:`lightly_krepes.data.load_adult_1m`, seed 0): one
  million rows drawn with replacement from the 32,561 rows of ``adult.data``,
  jittered (numeric noise, categorical re-draws; the construction and the number
  of exact duplicates are printed and stored). Size n is the first n rows (the
  rows are i.i.d. draws, so every prefix is itself a uniform resample).
- *Encoder.* MLP 108-256-256-64 (ReLU) with Lightly's SimCLR projection head,
  trained for ``--train-seconds`` with Lightly's ``NTXentLoss`` (Adam, lr 1e-3,
  batch 256) on SCARF views (``TabularMultiViewTransform``, corruption 0.6) of
  the first 100k rows; trained once, shared by every n, not part of the audit.
- *Audit*, per n, each in a fresh process (so that peak memory is per n):
  1. **landmarks**: ``build_surrogate`` (pNTK of the encoder, cosine-normalised;
     RPCholesky on a seeded pool of ``--pool-factor * m`` rows, at least 10k;
     ridge fit to the encoder on the pool);
  2. **features**: the coordinates of two SCARF views of all n rows (batches of
     256) into a :class:`~lightly_krepes.audit.FeatureStore` (in memory up to
     2 GiB, memory-mapped in ``--cache-dir`` beyond);
  3. **objective**: ``AuditObjective.from_features`` with the frozen head (its
     curvature subsample options where the installed version has them);
  4. **damping**: ``select_damping`` (``--candidates`` dampings, CG/Lanczos
     capped at ``--max-iter``);
  5. **step**: ``refine_step`` of the selected step (``--refine`` rounds of
     full-data corrections, as ``audit`` does after a subsampled-curvature
     selection; where the installed version has it), then ``apply_step``;
  6. **scores**: ``streamed_top`` of the step's expansion (``LandmarkExpansion``
     of ``Delta alpha``), top 10 landmarks of ``--score-rows`` rows.
- m: ``--num-landmarks`` if given, else ``ceil(sqrt(n))`` (1,000 at 1M).

**Measured**: seconds per stage and in all, Hessian-vector products (from the
damping selection where it reports them), peak resident memory of the worker
(``VmHWM``; after each stage, so the stage that sets the peak shows), the
feature cache's size and storage, and the log-log slope of time against n
(``numpy.polyfit``), with the extrapolation to 1M when 1M is not run.

**Target** (issue 10): the audit of Adult-1M end to end in <= 10 minutes on two
CPU cores with peak memory <= 12 GB.

``--quick`` runs n = 10k with m = 64 and a 10 s encoder: it checks that the
script runs and is not a result.
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import resource
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import REPO_ROOT, format_table, load_average, machine_info, write_json
from _ssl_training import (
    Split,
    SSLModel,
    TabularViews,
    make_head,
    probe_fidelity,
    tabular_mlp,
    train_for_budget,
)
from lightly.loss import NTXentLoss

import lightly_krepes.audit as audit_module
from lightly_krepes.attribution import (
    LandmarkExpansion,
    feature_alignment_gap,
    streamed_top,
)
from lightly_krepes.audit import (
    AuditObjective,
    FeatureStore,
    apply_step,
    build_surrogate,
    select_damping,
)
from lightly_krepes.audit.audit import DEFAULT_REFINE_ROUNDS
from lightly_krepes.data import count_duplicates, load_adult, load_adult_1m

DEFAULT_SIZES = (10_000, 100_000, 1_000_000)
REP_DIM = 64
TRAIN_ROWS = 100_000
MARGINAL_ROWS = 32_768


@dataclass
class Config:
    """Settings of one benchmark run."""

    sizes: tuple[int, ...] = DEFAULT_SIZES
    num_landmarks: int | None = None
    pool_factor: int = 20
    min_pool: int = 10_000
    batch_size: int = 256
    corruption_rate: float = 0.6
    train_seconds: float = 60.0
    candidates: int = 6
    max_iter: int = 50
    score_rows: int = 10_000
    curvature_rows: int | None = None
    refine: int = DEFAULT_REFINE_ROUNDS
    top_k: int = 10
    threads: int = 2
    seed: int = 0
    quick: bool = False
    reuse_cache: bool = False
    cache_dir: str = str(REPO_ROOT / "benchmarks" / "results" / "audit_scale_cache")
    check_step: tuple[int, ...] = ()
    findings: tuple[int, ...] = ()
    probe_rows: int = 20_000
    gap_rows: int = 2_000
    extra: dict[str, Any] = field(default_factory=dict)

    def landmarks_for(self, n: int) -> int:
        """m for n rows: the fixed ``num_landmarks`` or ``ceil(sqrt(n))``."""
        return self.num_landmarks or math.ceil(math.sqrt(n))


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far, in GiB.

    ``VmHWM`` of ``/proc/self/status``, which belongs to the process's own
    address space; ``ru_maxrss`` would carry the parent's peak over ``fork`` and
    ``exec`` into a worker. Memory-mapped pages of the feature cache that the
    audit touches count as resident. Falls back to ``ru_maxrss`` off Linux.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


# -- parent: data and encoder, prepared once ----------------------------------------


def prepare(cfg: Config, workdir: Path) -> dict[str, Any]:
    """Builds Adult-1M (as large as needed) and trains the encoder; saves both."""
    # Always the same one million rows (sizes are prefixes of it); --quick
    # builds only what it needs.
    n_build = max(*cfg.sizes, TRAIN_ROWS) if cfg.quick else max(*cfg.sizes, 10**6)
    t0 = time.perf_counter()
    data = load_adult_1m(n=n_build, seed=cfg.seed)
    load_seconds = time.perf_counter() - t0
    features = data.features.contiguous()
    np.save(workdir / "features.npy", features.numpy())
    groups = [list(range(s.start, s.stop)) for s in data.feature_slices.values()]
    (workdir / "groups.json").write_text(json.dumps(groups))
    names = {k: [s.start, s.stop] for k, s in data.feature_slices.items()}
    (workdir / "feature_slices.json").write_text(json.dumps(names))
    np.save(workdir / "labels.npy", data.labels.numpy())
    duplicates = {
        str(n): count_duplicates(features[:n], data.labels[:n]) for n in cfg.sizes
    }
    info: dict[str, Any] = {
        "construction": data.construction,
        "rows_built": len(data),
        "num_duplicates_all": data.num_duplicates,
        "num_duplicates_per_size": duplicates,
        "features": int(features.shape[1]),
        "load_seconds": load_seconds,
    }
    del data

    torch.manual_seed(cfg.seed)
    model = SSLModel(
        tabular_mlp(features.shape[1], REP_DIM, cfg.seed), make_head("simclr", REP_DIM)
    )
    rows = features[:TRAIN_ROWS]
    views = TabularViews(
        rows[:MARGINAL_ROWS], groups, cfg.corruption_rate, seed=cfg.seed
    )
    stats = train_for_budget(
        model,
        NTXentLoss(),
        views,
        rows,
        budget_seconds=cfg.train_seconds,
        batch_size=cfg.batch_size,
        optimizer="adam",
        seed=cfg.seed,
        desc="encoder (NTXent)",
    )
    model.eval()
    torch.save(model.state_dict(), workdir / "encoder.pt")
    info["encoder"] = {
        "architecture": f"MLP {features.shape[1]}-256-256-{REP_DIM} (ReLU)",
        "head": "Lightly SimCLRProjectionHead(64, 512, 128), frozen in eval mode",
        "loss": "lightly.loss.NTXentLoss()",
        "training": {k: v for k, v in stats.as_dict().items() if k != "loss_curve"},
        "views": views.describe(),
    }
    return info


# -- worker: one audit at size n ----------------------------------------------------


def supported(fn: Any, name: str) -> bool:
    """Whether the installed ``fn`` takes the keyword ``name`` (options landing)."""
    return name in inspect.signature(fn).parameters


def run_size(cfg: Config, workdir: Path, n: int) -> dict[str, Any]:
    """The audit at n rows, stage by stage; returns timings, counts and memory."""
    torch.set_num_threads(cfg.threads)
    stages: dict[str, float] = {}
    memory: dict[str, float] = {}

    def done(stage: str, start: float) -> None:
        stages[stage] = time.perf_counter() - start
        memory[stage] = peak_rss_gb()
        print(f"  n={n}: {stage} {stages[stage]:.1f} s, peak {memory[stage]:.2f} GiB")

    features = np.load(workdir / "features.npy", mmap_mode="r")
    data = torch.from_numpy(np.array(features[:n]))  # a writable copy
    groups = json.loads((workdir / "groups.json").read_text())
    model = SSLModel(tabular_mlp(data.shape[1], REP_DIM, 0), make_head("simclr", 64))
    model.load_state_dict(torch.load(workdir / "encoder.pt", weights_only=True))
    model.eval()
    encoder, head = model.backbone, model.head
    m = cfg.landmarks_for(n)
    pool = min(n, max(cfg.min_pool, cfg.pool_factor * m))
    memory["inputs"] = peak_rss_gb()

    t = time.perf_counter()
    surrogate = build_surrogate(
        encoder,
        data,
        num_landmarks=m,
        pool_size=pool,
        seed=cfg.seed,
        batch_size=1024,
        progress=True,
    )
    done("landmarks", t)

    marginals = data[:MARGINAL_ROWS]

    def view_batches() -> Any:
        views = TabularViews(marginals, groups, cfg.corruption_rate, seed=cfg.seed + 1)
        for start in range(0, n, cfg.batch_size):
            yield views(data[start : start + cfg.batch_size])

    folder = Path(cfg.cache_dir) / f"n{n}_m{m}"
    if not cfg.reuse_cache:
        # A fresh pass, so that the timing is the features' (not a resume).
        shutil.rmtree(folder, ignore_errors=True)
    t = time.perf_counter()
    store = FeatureStore.build(
        surrogate,
        view_batches(),
        num_samples=n,
        cache_dir=folder,
        overwrite=True,
        settings={
            "seed": cfg.seed + 1,
            "views": "SCARF",
            "corruption_rate": cfg.corruption_rate,
        },
    )
    done("features", t)

    t = time.perf_counter()
    options: dict[str, Any] = {"head": head}
    if supported(AuditObjective.from_features, "seed"):
        options["seed"] = cfg.seed
    if cfg.curvature_rows is not None:
        if not supported(AuditObjective.from_features, "curvature_rows"):
            raise SystemExit("--curvature-rows needs AuditObjective(curvature_rows=)")
        options["curvature_rows"] = cfg.curvature_rows or None
    objective = AuditObjective.from_features(
        surrogate, NTXentLoss(), store.batches(), **options
    )
    done("objective", t)

    t = time.perf_counter()
    selection = select_damping(
        objective,
        num_candidates=cfg.candidates,
        max_iter=cfg.max_iter,
        seed=cfg.seed,
        progress=True,
    )
    done("damping", t)

    t = time.perf_counter()
    step = selection.step
    refine = getattr(audit_module, "refine_step", None)
    refined = refine is not None and cfg.refine > 0
    if refined:
        # What audit() does after a subsampled-curvature selection: full-data
        # products correct the step (one full HVP and one cheap solve per round).
        step = refine(
            objective, step, rounds=cfg.refine, max_iter=cfg.max_iter, progress=True
        )
    audited = apply_step(surrogate, step)
    done("step", t)

    t = time.perf_counter()
    expansion = LandmarkExpansion(surrogate, step.delta_alpha)
    rows = data[: min(n, cfg.score_rows)]
    top = streamed_top(expansion, rows, cfg.top_k, batch_size=1024, progress=True)
    done("scores", t)

    extra: dict[str, Any] = {}
    if n in cfg.check_step:
        t = time.perf_counter()
        extra["step_check"] = full_hessian_check(cfg, surrogate, store, head, step)
        extra["step_check"]["seconds"] = time.perf_counter() - t
    if n in cfg.findings:
        t = time.perf_counter()
        extra["findings"] = findings(cfg, workdir, data, encoder, audited, step)
        extra["findings"]["seconds"] = time.perf_counter() - t
    del audited
    curvature_batches = getattr(objective, "curvature_batches", None)
    return {
        **extra,
        "n": n,
        "num_landmarks": m,
        "pool_size": pool,
        "nystrom_rank": surrogate.nystrom.rank,
        "out_dim": surrogate.out_dim,
        "num_batches": store.num_batches,
        "feature_store": {
            "storage": store.storage,
            "gib": store.nbytes / 2**30,
            "path": None if store.path is None else str(store.path),
            "computed_blocks": store.computed_blocks,
            "resumed_blocks": store.resumed_blocks,
        },
        "curvature_rows": getattr(objective, "curvature_rows", None),
        "curvature_batches": None
        if curvature_batches is None
        else len(curvature_batches),
        "damping": selection.damping,
        "fallback": selection.fallback,
        "hvp_count": getattr(selection, "hvp_count", None),
        "cg_iterations": [c.step.cg_iterations for c in selection.candidates],
        "refine_rounds": cfg.refine if refined else 0,
        # Full-data residual / |g| at the end: the rounds stop below 5e-3.
        "refine_residual": step.cg_residual if refined else None,
        # Each round: one full-data product and CG on the subsample's products.
        "refine_cg_iterations": step.cg_iterations if refined else None,
        "loss_after_selected": selection.step.loss_after,
        "loss_before": step.loss_before,
        "loss_after": step.loss_after,
        "score_rows": int(rows.shape[0]),
        "top_shape": list(top.indices.shape),
        "seconds": stages,
        "total_seconds": sum(stages.values()),
        "peak_rss_gib_after": memory,
        "peak_rss_gib": peak_rss_gb(),
        "load_average_at_end": load_average(),
    }


def full_hessian_check(
    cfg: Config, surrogate: Any, store: Any, head: Any, step: Any
) -> dict[str, Any]:
    """The step against the full-curvature step at the same damping (issue 10: 1 %).

    Not part of the timed audit: the full-data products it needs are what the
    subsample saves.
    """
    objective = AuditObjective.from_features(
        surrogate, NTXentLoss(), store.batches(), head=head, curvature_rows=None
    )
    # Keep every batch's graph (about 9 MB per batch of 256 at h = 64): each
    # full-data product is then one backward pass instead of a rebuild.
    objective.graph_cache_bytes = 12 << 30
    exact = audit_module.solve_newton(
        objective, step.damping, max_iter=4 * cfg.max_iter, tol=1e-6, progress=True
    )
    difference = float(
        (step.delta_alpha - exact.delta_alpha).norm() / exact.delta_alpha.norm()
    )
    print(f"  step vs full-Hessian step: relative difference {difference:.4f}")
    return {
        "relative_difference": difference,
        "target": 0.01,
        "meets_target": difference <= 0.01,
        "exact_cg_iterations": exact.cg_iterations,
        "exact_converged": exact.converged,
        "damping": step.damping,
    }


FINDING_FEATURES = ("sex", "relationship", "race", "age", "education", "occupation")


def findings(
    cfg: Config, workdir: Path, data: Tensor, encoder: Any, audited: Any, step: Any
) -> dict[str, Any]:
    """What the audit finds: fidelity to the encoder and Feature Alignment Gaps.

    Fidelity: linear probes of income (fitted on ``--probe-rows`` Adult-1M rows,
    scored on the untouched ``adult.test``) of the audited surrogate and of the
    encoder, compared by ``surrogate_fidelity``. Gaps: ``feature_alignment_gap``
    of the step's expansion (``Delta alpha``, the paper's audit) on
    ``--gap-rows`` test rows, per original feature.
    """
    labels_path = workdir / "labels.npy"
    if not labels_path.exists():
        return {"skipped": "no labels.npy in the inputs (rebuild them)"}
    labels = torch.from_numpy(np.load(labels_path)).long()
    slices = json.loads((workdir / "feature_slices.json").read_text())
    test = load_adult("test")
    rows = min(cfg.probe_rows, data.shape[0])
    labelled = Split(data[:rows], labels[:rows])
    held_out = Split(test.features, test.labels.long())
    out: dict[str, Any] = {"probe_rows": rows, "test_rows": len(test)}
    out.update(probe_fidelity(audited, encoder, labelled, held_out, cfg.seed))
    expansion = LandmarkExpansion(audited, step.delta_alpha)
    x = test.features[: cfg.gap_rows].to(expansion.landmarks.dtype)
    gaps = {}
    for name in FINDING_FEATURES:
        start, stop = slices[name]
        feature: Any = start if stop - start == 1 else slice(start, stop)
        result = feature_alignment_gap(expansion, x, feature, seed=cfg.seed)
        spread = result.per_sample.std().item() / max(1, x.shape[0]) ** 0.5
        gaps[name] = {"gap": result.gap, "ci95": 1.96 * spread}
    out["feature_alignment_gap"] = gaps
    print(
        "  findings: probe accuracy surrogate "
        f"{out.get('surrogate_accuracy', float('nan')):.4f} / encoder "
        f"{out.get('encoder_accuracy', float('nan')):.4f}, tau "
        f"{out.get('kendall_tau', float('nan')):.3f}; gaps "
        + ", ".join(f"{k} {v['gap']:+.3f}" for k, v in gaps.items())
    )
    return out


# -- report ---------------------------------------------------------------------------


def slopes(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Log-log slope of every stage's time (and the total) against n."""
    if len(results) < 2:
        return {}
    n = np.log([r["n"] for r in results])
    out: dict[str, Any] = {}
    keys = [*results[0]["seconds"], "total"]
    for key in keys:
        seconds = [
            r["total_seconds"] if key == "total" else r["seconds"][key] for r in results
        ]
        slope, intercept = np.polyfit(n, np.log(np.maximum(seconds, 1e-6)), 1)
        out[key] = {
            "slope": float(slope),
            "extrapolated_1m_seconds": float(np.exp(intercept + slope * np.log(1e6))),
        }
    return out


def print_report(payload: dict[str, Any]) -> None:
    """The tables of the run."""
    data = payload["data"]
    print(f"\nAdult-1M: {data['construction']}")
    print(
        f"exact duplicates: {data['num_duplicates_per_size']} (by size), "
        f"{data['num_duplicates_all']} in all {data['rows_built']} rows"
    )
    enc = data["encoder"]["training"]
    print(
        f"encoder: {data['encoder']['architecture']}, {enc['steps']} steps in "
        f"{enc['seconds']:.0f} s, NTXent {enc['loss_start']:.3f} -> "
        f"{enc['loss_end']:.3f}"
    )
    results = payload["results"]
    stages = list(results[0]["seconds"]) if results else []
    headers = ["n", "m", "r", *stages, "total s", "HVPs", "peak GiB", "store"]
    rows = [
        [
            r["n"],
            r["num_landmarks"],
            r["nystrom_rank"],
            *(r["seconds"][s] for s in stages),
            r["total_seconds"],
            r["hvp_count"],
            r["peak_rss_gib"],
            f"{r['feature_store']['storage']} {r['feature_store']['gib']:.2f} GiB",
        ]
        for r in results
    ]
    print()
    print(format_table(headers, rows))
    if payload["slopes"]:
        print("\nlog-log slope of time against n (extrapolated to 1M):")
        print(
            format_table(
                ["stage", "slope", "1M s"],
                [
                    [k, v["slope"], v["extrapolated_1m_seconds"]]
                    for k, v in payload["slopes"].items()
                ],
            )
        )


def parse_args(
    argv: list[str] | None = None,
) -> tuple[Config, Path, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add = parser.add_argument
    add("--quick", action="store_true", help="n=10k, m=64, 10 s encoder")
    add("--sizes", default=",".join(str(s) for s in DEFAULT_SIZES))
    add("--num-landmarks", type=int, default=None, help="fixed m (default sqrt n)")
    add("--pool-factor", type=int, default=20)
    add("--train-seconds", type=float, default=60.0)
    add("--candidates", type=int, default=6)
    add("--max-iter", type=int, default=50)
    add("--score-rows", type=int, default=10_000)
    add(
        "--curvature-rows",
        type=int,
        default=None,
        help="rows of the HVP subsample (0: all; default: the library's)",
    )
    add(
        "--refine",
        type=int,
        default=DEFAULT_REFINE_ROUNDS,
        help="most refine_step rounds after the selection, as audit() (0: none)",
    )
    add(
        "--check-step",
        default="",
        help="sizes (comma-separated) whose step is compared with the full-Hessian "
        "step (untimed)",
    )
    add(
        "--findings",
        default="",
        help="sizes whose audit findings (probe fidelity, Feature Alignment Gaps) "
        "are computed (untimed)",
    )
    add("--threads", type=int, default=2)
    add("--seed", type=int, default=0)
    add("--cache-dir", default=None)
    add(
        "--reuse-cache",
        action="store_true",
        help="resume or reuse feature caches (default: rebuild, for the timing)",
    )
    add("--output", default=None)
    add(
        "--reuse-inputs",
        action="store_true",
        help="reuse the rows and encoder of an earlier run in --cache-dir",
    )
    add(
        "--include",
        action="append",
        default=[],
        help="JSON of an earlier run (same inputs) whose other sizes join the fit",
    )
    add("--workdir", default=None, help=argparse.SUPPRESS)
    add("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cfg = Config(
        sizes=tuple(int(s) for s in args.sizes.split(",")),
        num_landmarks=args.num_landmarks,
        pool_factor=args.pool_factor,
        train_seconds=args.train_seconds,
        candidates=args.candidates,
        max_iter=args.max_iter,
        score_rows=args.score_rows,
        curvature_rows=args.curvature_rows,
        refine=args.refine,
        threads=args.threads,
        seed=args.seed,
        quick=args.quick,
        reuse_cache=args.reuse_cache,
        check_step=tuple(int(v) for v in args.check_step.split(",") if v),
        findings=tuple(int(v) for v in args.findings.split(",") if v),
    )
    if args.cache_dir is not None:
        cfg.cache_dir = args.cache_dir
    if cfg.quick:
        cfg.sizes = (10_000,)
        cfg.num_landmarks = cfg.num_landmarks or 64
        cfg.train_seconds = min(cfg.train_seconds, 10.0)
        cfg.candidates = min(cfg.candidates, 4)
        cfg.max_iter = min(cfg.max_iter, 20)
        cfg.score_rows = min(cfg.score_rows, 2_000)
    name = "audit_scale_quick.json" if cfg.quick else "audit_scale.json"
    output = (
        Path(args.output) if args.output else REPO_ROOT / "benchmarks/results" / name
    )
    return cfg, output, args


def main(argv: list[str] | None = None) -> int:
    cfg, output, args = parse_args(argv)
    torch.set_num_threads(cfg.threads)
    if args.worker is not None:
        result = run_size(cfg, Path(args.workdir), args.worker)
        (Path(args.workdir) / f"result_{args.worker}.json").write_text(
            json.dumps(result, default=str)
        )
        return 0
    workdir = Path(cfg.cache_dir) / "inputs"
    workdir.mkdir(parents=True, exist_ok=True)
    info = machine_info()
    start = time.perf_counter()
    saved = workdir / "data.json"
    if args.reuse_inputs and saved.exists() and (workdir / "encoder.pt").exists():
        # The same rows and encoder as an earlier run, e.g. to add n = 1M to it.
        data_info = json.loads(saved.read_text())
        data_info["reused_from"] = str(workdir)
    else:
        data_info = prepare(cfg, workdir)
        saved.write_text(json.dumps(data_info, default=str))
    results = []
    for path in args.include:
        earlier = json.loads(Path(path).read_text())
        results += [r for r in earlier["results"] if r["n"] not in cfg.sizes]
    for n in sorted(cfg.sizes):
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            *(argv if argv is not None else sys.argv[1:]),
            "--workdir",
            str(workdir),
            "--worker",
            str(n),
        ]
        if cfg.quick and "--quick" not in command:
            command.append("--quick")
        t = time.perf_counter()
        subprocess.run(command, check=True)
        result = json.loads((workdir / f"result_{n}.json").read_text())
        result["process_seconds"] = time.perf_counter() - t
        results.append(result)
    results.sort(key=lambda r: int(r["n"]))
    payload = {
        "benchmark": "audit_scale",
        "config": asdict(cfg),
        "machine": info,
        "data": data_info,
        "results": results,
        "slopes": slopes(results),
        "wall_seconds": time.perf_counter() - start,
        "load_average_at_end": load_average(),
        "target": "Adult-1M audit end to end <= 600 s, peak memory <= 12 GB",
    }
    print_report(payload)
    write_json(output, payload)
    print(f"\nwrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
