"""Shared test configuration: hypothesis profiles and the real-data location."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, settings

# Property tests run on 2 CPU cores in CI: few examples, no per-example deadline
# (torch's first calls are slow). `HYPOTHESIS_PROFILE=thorough` runs more.
settings.register_profile(
    "ci",
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("thorough", max_examples=200, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

torch.set_num_threads(min(2, torch.get_num_threads()))

# An empty variable counts as unset, as in lightly_krepes.data.resolve_data_root
# (Path("") would be the working directory, and the data tests would not skip).
SHARED_DATA = Path(
    os.environ.get("LIGHTLY_KREPES_DATA")
    or Path(__file__).resolve().parents[2] / "shared" / "data"
)


@pytest.fixture
def shared_data() -> Path:
    """The folder of real datasets; skips the test when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(
            f"real datasets not found at {SHARED_DATA}; set LIGHTLY_KREPES_DATA to "
            f"the folder holding cifar10-jpg.tar.gz, fashion-mnist/ and adult/"
        )
    return SHARED_DATA
