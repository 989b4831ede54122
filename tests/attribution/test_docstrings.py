from __future__ import annotations

import doctest
import importlib

import pytest
import torch

MODULES = [
    "lightly_krepes.attribution.expansion",
    "lightly_krepes.attribution.feature_alignment",
    "lightly_krepes.attribution.landmark_attribution",
    "lightly_krepes.attribution.landmark_mask",
    "lightly_krepes.attribution.landmark_validation",
    "lightly_krepes.attribution.representer_influence",
    "lightly_krepes.attribution.scores",
    "lightly_krepes.attribution.targets",
    "lightly_krepes.plotting",
]


class TestDocstrings:
    @pytest.mark.parametrize("module", MODULES)
    def test_docstrings__examples_run(self, module: str) -> None:
        mod = importlib.import_module(module)
        torch.manual_seed(0)
        result = doctest.testmod(
            mod,
            extraglobs={"torch": torch},
            optionflags=doctest.ELLIPSIS,
            verbose=False,
        )
        assert result.attempted > 0
        assert result.failed == 0
