from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from lightly.loss import NTXentLoss
from torch import Tensor, nn

from lightly_krepes.audit import AuditObjective, FeatureStore, view_batches
from lightly_krepes.audit.feature_store import MANIFEST_NAME, backbone_fingerprint
from lightly_krepes.backbone import KernelBackbone
from lightly_krepes.kernels import RBF, EmpiricalNTK

Batches = list[tuple[Tensor, Tensor]]


def _backbone(
    lengthscale: float = 2.0, dtype: torch.dtype = torch.float32
) -> KernelBackbone:
    gen = torch.Generator().manual_seed(0)
    landmarks = torch.randn(12, 3, generator=gen, dtype=dtype)
    return KernelBackbone(RBF(lengthscale), landmarks, out_dim=3)


def _entk_backbone() -> KernelBackbone:
    torch.manual_seed(1)
    mlp = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 4)).eval()
    gen = torch.Generator().manual_seed(2)
    return KernelBackbone(EmpiricalNTK(mlp), torch.randn(10, 3, generator=gen), 3)


def _batches(n: int, batch_size: int, seed: int = 3) -> Batches:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen)
    noise = 0.1 * torch.randn(2, n, 3, generator=gen)
    return list(view_batches([x + noise[0], x + noise[1]], batch_size))  # type: ignore[arg-type]


def _interrupted(batches: Batches, at: int) -> Iterator[tuple[Tensor, Tensor]]:
    for i, batch in enumerate(batches):
        if i == at:
            raise KeyboardInterrupt(f"interrupted at batch {at}")
        yield batch


def _expected(
    backbone: KernelBackbone, batches: Sequence[Sequence[Tensor]]
) -> list[tuple[Tensor, ...]]:
    with torch.no_grad():
        return [tuple(backbone.features(v).float() for v in b) for b in batches]


def _assert_equal(store: FeatureStore, expected: list[tuple[Tensor, ...]]) -> None:
    got = store.batches()
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        assert len(a) == len(b)
        for x, y in zip(a, b, strict=True):
            assert x.shape == y.shape
            assert torch.equal(x, y)


class TestFeatureStore:
    @given(
        n=st.integers(1, 60),
        batch_size=st.integers(1, 17),
        block_rows=st.integers(1, 40),
        disk=st.booleans(),
    )
    def test_build__equals_backbone_features(
        self, n: int, batch_size: int, block_rows: int, disk: bool
    ) -> None:
        backbone = _backbone()
        batches = _batches(n, batch_size)
        with tempfile.TemporaryDirectory() as folder:
            store = FeatureStore.build(
                backbone,
                batches,
                cache_dir=folder,
                storage="disk" if disk else "memory",
                block_rows=block_rows,
                progress=False,
            )
            assert store.storage == ("disk" if disk else "memory")
            assert store.num_samples == n
            assert store.batch_sizes == [len(b[0]) for b in batches]
            _assert_equal(store, _expected(backbone, batches))

    def test_build__entk_backbone(self, tmp_path: Path) -> None:
        backbone = _entk_backbone()
        batches = _batches(30, 8)
        store = FeatureStore.build(
            backbone, batches, cache_dir=tmp_path, storage="disk", progress=False
        )
        assert store.rank == backbone.nystrom.rank
        _assert_equal(store, _expected(backbone, batches))

    @given(at=st.integers(1, 9), block_rows=st.integers(1, 30))
    def test_build__resumes_after_interruption(self, at: int, block_rows: int) -> None:
        backbone = _backbone()
        batches = _batches(50, 5)  # 10 batches
        reference = _expected(backbone, batches)
        with tempfile.TemporaryDirectory() as folder:
            with pytest.raises(KeyboardInterrupt):
                FeatureStore.build(
                    backbone,
                    _interrupted(batches, at),
                    num_samples=50,
                    cache_dir=folder,
                    block_rows=block_rows,
                    storage="disk",
                    progress=False,
                )
            manifest = json.loads((Path(folder) / MANIFEST_NAME).read_text())
            finished = len(manifest["blocks"])
            # Only whole blocks that ended before the interruption are recorded.
            assert sum(sum(b["batches"]) for b in manifest["blocks"]) <= at * 5
            assert not manifest["complete"]
            store = FeatureStore.build(
                backbone,
                iter(batches),
                num_samples=50,
                cache_dir=folder,
                block_rows=block_rows,
                storage="disk",
                progress=False,
            )
            assert store.resumed_blocks == finished
            blocks = -(-50 // (-(-block_rows // 5) * 5))  # ceil(50 / rows per block)
            assert store.resumed_blocks + store.computed_blocks == blocks
            _assert_equal(store, reference)
            manifest = json.loads((Path(folder) / MANIFEST_NAME).read_text())
            assert manifest["complete"]

    def test_build__complete_cache_is_reused(self, tmp_path: Path) -> None:
        backbone = _backbone()
        batches = _batches(40, 8)
        first = FeatureStore.build(
            backbone, batches, cache_dir=tmp_path, storage="disk", block_rows=16,
            progress=False,
        )  # fmt: skip
        again = FeatureStore.build(
            backbone, batches, cache_dir=tmp_path, storage="disk", block_rows=16,
            progress=False,
        )  # fmt: skip
        assert first.computed_blocks == 3 and first.resumed_blocks == 0
        assert again.computed_blocks == 0 and again.resumed_blocks == 3
        _assert_equal(again, _expected(backbone, batches))

    def test_build__other_backbone_raises(self, tmp_path: Path) -> None:
        batches = _batches(20, 8)
        FeatureStore.build(
            _backbone(2.0), batches, cache_dir=tmp_path, storage="disk", progress=False
        )
        with pytest.raises(ValueError, match="belongs to another audit: its backbone"):
            FeatureStore.build(
                _backbone(1.0), batches, cache_dir=tmp_path, storage="disk",
                progress=False,
            )  # fmt: skip
        store = FeatureStore.build(
            _backbone(1.0), batches, cache_dir=tmp_path, storage="disk",
            overwrite=True, progress=False,
        )  # fmt: skip
        assert store.computed_blocks == 1
        _assert_equal(store, _expected(_backbone(1.0), batches))

    @pytest.mark.parametrize(
        ("seed", "batch_size", "view_seed", "part"),
        [(4, 8, 0, "data"), (3, 5, 0, "data"), (3, 8, 1, "settings")],
    )
    def test_build__other_data_or_settings_raises(
        self, tmp_path: Path, seed: int, batch_size: int, view_seed: int, part: str
    ) -> None:
        FeatureStore.build(
            _backbone(), _batches(20, 8), cache_dir=tmp_path, storage="disk",
            settings={"seed": 0}, progress=False,
        )  # fmt: skip
        with pytest.raises(ValueError, match=f"its {part} differs.*overwrite=True"):
            FeatureStore.build(
                _backbone(), _batches(20, batch_size, seed), cache_dir=tmp_path,
                storage="disk", settings={"seed": view_seed}, progress=False,
            )  # fmt: skip

    def test_build__changed_later_batches_raise(self, tmp_path: Path) -> None:
        batches = _batches(40, 8)
        FeatureStore.build(
            _backbone(), batches, cache_dir=tmp_path, storage="disk", block_rows=8,
            progress=False,
        )  # fmt: skip
        # Same first batch, same n, different later batch sizes.
        regrouped = [batches[0], *_batches(40, 4)[2:]]
        with pytest.raises(ValueError, match=r"Block 1 .* differs"):
            FeatureStore.build(
                _backbone(), regrouped, cache_dir=tmp_path, storage="disk",
                block_rows=8, progress=False,
            )  # fmt: skip

    def test_build__non_writable_dir_raises(self, tmp_path: Path) -> None:
        blocker = tmp_path / "a_file"
        blocker.write_text("not a folder")
        with pytest.raises(PermissionError, match="writable"):
            FeatureStore.build(
                _backbone(), _batches(10, 5), cache_dir=blocker / "cache",
                storage="disk", progress=False,
            )  # fmt: skip

    def test_build__non_finite_row_raises_with_block_and_row(
        self, tmp_path: Path
    ) -> None:
        batches = _batches(40, 8)
        broken = batches[3][1].clone()
        broken[5, 0] = float("nan")
        batches[3] = (batches[3][0], broken)
        with pytest.raises(
            ValueError,
            match=r"inputs of view 1 of batch 3 \(block 1\).*at row 29 \(row 5 ",
        ):
            FeatureStore.build(
                _backbone(), batches, cache_dir=tmp_path, storage="disk",
                block_rows=16, progress=False,
            )  # fmt: skip
        manifest = json.loads((tmp_path / MANIFEST_NAME).read_text())
        assert [b["index"] for b in manifest["blocks"]] == [0]

    def test_build__auto_storage_by_memory_limit(self, tmp_path: Path) -> None:
        batches = _batches(20, 8)
        nbytes = 2 * 20 * _backbone().nystrom.rank * 4
        small = FeatureStore.build(
            _backbone(), batches, cache_dir=tmp_path, memory_limit_bytes=nbytes,
            progress=False,
        )  # fmt: skip
        large = FeatureStore.build(
            _backbone(), batches, cache_dir=tmp_path, memory_limit_bytes=nbytes - 1,
            progress=False,
        )  # fmt: skip
        assert (small.storage, large.storage) == ("memory", "disk")
        assert large.nbytes == nbytes
        with pytest.raises(ValueError, match="no cache_dir was given"):
            FeatureStore.build(
                _backbone(), batches, memory_limit_bytes=nbytes - 1, progress=False
            )

    def test_build__generator_needs_num_samples(self) -> None:
        with pytest.raises(ValueError, match="num_samples"):
            FeatureStore.build(_backbone(), iter(_batches(10, 5)), progress=False)
        with pytest.raises(ValueError, match="hold 10 samples but num_samples is 12"):
            FeatureStore.build(
                _backbone(), iter(_batches(10, 5)), num_samples=12, progress=False
            )

    @pytest.mark.parametrize("storage", ["memory", "disk"])
    def test_batches__are_views_without_copy(
        self, tmp_path: Path, storage: str
    ) -> None:
        store = FeatureStore.build(
            _backbone(), _batches(20, 8), cache_dir=tmp_path, storage=storage,  # type: ignore[arg-type]
            progress=False,
        )  # fmt: skip
        base = store.view(0).untyped_storage().data_ptr()
        for batch in store.batches():
            for v in batch:
                assert v.untyped_storage().data_ptr() == base

    def test_from_features__objective_equals_kernel_pass(self) -> None:
        backbone = _backbone(dtype=torch.float64)
        batches = [tuple(v.double() for v in b) for b in _batches(48, 16)]
        store = FeatureStore.build(
            backbone, batches, dtype=torch.float64, progress=False
        )
        cached = AuditObjective.from_features(backbone, NTXentLoss(), store.batches())
        direct = AuditObjective(backbone, NTXentLoss(), batches, progress=False)
        theta = direct.initial_parameters()
        vector = torch.randn(theta.shape, generator=torch.Generator().manual_seed(5))
        assert cached.value(theta) == direct.value(theta)
        assert torch.equal(
            cached.hvp(theta, vector), direct.hvp(theta, vector.double())
        )


class TestBackboneFingerprint:
    def test_backbone_fingerprint__ignores_linear_map(self) -> None:
        a, b = _backbone(), _backbone()
        with torch.no_grad():
            b.linear.weight.add_(1.0)
        assert backbone_fingerprint(a) == backbone_fingerprint(b)

    def test_backbone_fingerprint__sees_entk_network(self) -> None:
        a, b = _entk_backbone(), _entk_backbone()
        kernel = b.nystrom.kernel
        assert isinstance(kernel, EmpiricalNTK)
        with torch.no_grad():
            # The eNTK keeps the network's weights as buffers.
            next(kernel.buffers()).add_(1.0)
        assert backbone_fingerprint(a) != backbone_fingerprint(b)
