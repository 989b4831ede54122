"""The audit across real torch.distributed processes (gloo, CPU) against one process."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from lightly.loss import NTXentLoss
from torch import Tensor, nn

from lightly_krepes import _distributed
from lightly_krepes.audit import AuditObjective, RidgeMoments, audit_encoder
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF

pytestmark = pytest.mark.skipif(
    not dist.is_available(),
    reason="torch.distributed is not available in this PyTorch build (PyTorch "
    "built with USE_DISTRIBUTED=0), so no process group can be started.",
)

BATCH_SIZE = 16
# (damping, curvature_rows, subsample_values): a fixed damping, a selected one,
# and a curvature subsample of 3 of 6 batches chosen by global batch index.
CONFIGS: dict[str, dict[str, Any]] = {
    "fixed": {"damping": 50.0},
    "selected": {"damping": None},
    "subsampled": {"damping": 50.0, "curvature_rows": 48, "subsample_values": True},
}


def _encoder() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 4)).double().eval()


def _data(n: int) -> Tensor:
    return torch.randn(n, 5, generator=torch.Generator().manual_seed(3)).double()


def _noise_views(x: Tensor) -> list[Tensor]:
    # Draws from the global generator, as image transforms do.
    return [x + 0.2 * torch.randn_like(x), x + 0.2 * torch.randn_like(x)]


def _run(n: int, configs: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name in configs:
        result = audit_encoder(
            _encoder(),
            _data(n),
            NTXentLoss(),
            transform=_noise_views,
            num_landmarks=12,
            batch_size=BATCH_SIZE,
            max_iter=30,
            progress=False,
            **CONFIGS[name],
        )
        audited = result.audited
        indices = result.backbone.landmark_indices
        assert audited.linear.bias is not None and indices is not None
        out[name] = {
            "delta_alpha": result.step.delta_alpha.detach().clone(),
            "weights": audited.representer_weights.detach().clone(),
            "bias": audited.linear.bias.detach().clone(),
            "initial": result.backbone.representer_weights.detach().clone(),
            "damping": result.damping,
            "loss_after": result.step.loss_after,
            "landmarks": indices.clone(),
        }
    return out


# (rows, configs): 96 rows are 6 batches, 3 per rank; 72 rows are 5 batches (the
# last of 8 rows), which 2 ranks split 3 and 2.
PROBLEMS = {"even": (96, list(CONFIGS)), "uneven": (72, ["fixed"])}
WORLD = 2


def _everything(rank: int) -> dict[str, Any]:
    results: dict[str, Any] = {
        name: _run(n, configs) for name, (n, configs) in PROBLEMS.items()
    }
    results["reductions"] = _reductions(rank)
    return results


def _worker(rank: int, world: int, store: str, out_dir: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"file://{store}", rank=rank, world_size=world
    )
    try:
        assert _distributed.is_distributed()
        assert _distributed.world_size() == world
        torch.save(_everything(rank), Path(out_dir) / f"rank{rank}.pt")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ranks(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """The results of every rank of one spawned 2-process gloo group.

    One group serves all tests: starting a process (importing torch and Lightly)
    costs far more than the audits themselves.
    """
    out = tmp_path_factory.mktemp("distributed")
    mp.spawn(  # type: ignore[attr-defined,no-untyped-call]
        _worker, args=(WORLD, str(out / "store"), str(out)), nprocs=WORLD, join=True
    )
    return [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _relative(a: Tensor, b: Tensor) -> float:
    return float((a - b).norm() / b.norm().clamp_min(1e-300))


def _assert_matches(ranks: list[Any], single: dict[str, dict[str, Any]]) -> None:
    for name, expected in single.items():
        for r, results in enumerate(ranks):
            got = results[name]
            assert torch.equal(got["landmarks"], expected["landmarks"]), (name, r)
            assert got["damping"] == pytest.approx(expected["damping"], rel=1e-10)
            assert got["loss_after"] == pytest.approx(expected["loss_after"], rel=1e-10)
            for key in ("delta_alpha", "weights", "bias", "initial"):
                error = _relative(got[key], expected[key])
                assert error < 1e-10, (name, r, key, error)


class TestDistributedAudit:
    def test_audit_encoder__two_processes_equal_one(
        self, ranks: list[dict[str, Any]]
    ) -> None:
        n, configs = PROBLEMS["even"]
        single = _run(n, configs)
        _assert_matches([r["even"] for r in ranks], single)
        # A zero step would match trivially.
        assert float(single["fixed"]["delta_alpha"].norm()) > 1e-6
        assert single["selected"]["damping"] != single["fixed"]["damping"]

    def test_audit_encoder__world_size_not_dividing_batches(
        self, ranks: list[dict[str, Any]]
    ) -> None:
        n, configs = PROBLEMS["uneven"]
        _assert_matches([r["uneven"] for r in ranks], _run(n, configs))


def _reductions(rank: int) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(0)
    # Offset features: centring raw sums would lose digits here.
    f = torch.randn(10, 3, generator=gen, dtype=torch.float64) + 5.0
    y = torch.randn(10, 2, generator=gen, dtype=torch.float64)
    landmarks = torch.randn(6, 3, generator=gen, dtype=torch.float64)
    x = torch.randn(8, 3, generator=gen, dtype=torch.float64)
    torch.manual_seed(0)
    backbone = KernelBackbone(RBF(2.0), landmarks, out_dim=2)
    batches = [(x * (1 + 0.1 * b), x + 0.1) for b in range(3)]
    out: dict[str, Any] = {
        # Rank 1 holds no rows of the regression.
        "moments": RidgeMoments.from_shards(f[: 10 - 10 * rank], y[: 10 - 10 * rank]),
    }
    # Three batches split 2 and 1; one batch leaves rank 1 without any.
    for name, given in (("three", batches), ("one", batches[:1])):
        objective = AuditObjective(
            backbone, NTXentLoss(), given, progress=False, curvature_rows=None
        )
        theta = objective.initial_parameters()
        out[name] = {
            "local_batches": objective.batch_indices,
            "num_samples": objective.num_samples,
            "value": objective.value(theta),
            "gradient": objective.gradient(theta)[1],
            "hvp": objective.hvp(theta, torch.ones_like(theta)),
        }
    return out


class TestDistributedReductions:
    def test_reductions__equal_one_process_with_a_rank_without_rows(
        self, ranks: list[dict[str, Any]]
    ) -> None:
        expected = _reductions(0)
        local = [
            [r["reductions"][k]["local_batches"] for r in ranks]
            for k in ("three", "one")
        ]
        assert local == [[[0, 2], [1]], [[0], []]]
        for r in (rank["reductions"] for rank in ranks):
            got, want = r["moments"], expected["moments"]
            assert got.num_samples == want.num_samples == 10
            torch.testing.assert_close(got.gram, want.gram, rtol=1e-12, atol=0)
            torch.testing.assert_close(got.cross, want.cross, rtol=1e-12, atol=0)
            torch.testing.assert_close(
                got.feature_mean, want.feature_mean, rtol=1e-14, atol=0
            )
            assert got.target_sq == pytest.approx(want.target_sq, rel=1e-12)
            for name in ("three", "one"):
                got, want = r[name], expected[name]
                assert got["num_samples"] == want["num_samples"]
                assert got["value"] == pytest.approx(want["value"], rel=1e-12)
                for key in ("gradient", "hvp"):
                    torch.testing.assert_close(got[key], want[key], rtol=1e-12, atol=0)
