from __future__ import annotations

import numpy as np
import pytest
import torch

from lightly_krepes.data import ImageArrayDataset, to_float_images


class TestToFloatImages:
    def test_to_float_images__rgb(self) -> None:
        images = torch.arange(2 * 4 * 5 * 3, dtype=torch.uint8).reshape(2, 4, 5, 3)
        out = to_float_images(images)
        assert out.shape == (2, 3, 4, 5)
        assert out.dtype == torch.float32
        assert torch.allclose(out * 255, images.permute(0, 3, 1, 2).float())

    def test_to_float_images__greyscale(self) -> None:
        out = to_float_images(torch.full((3, 6, 6), 51, dtype=torch.uint8))
        assert out.shape == (3, 1, 6, 6)
        assert torch.allclose(out, torch.full_like(out, 0.2))

    def test_to_float_images__wrong_input(self) -> None:
        with pytest.raises(ValueError, match="uint8"):
            to_float_images(torch.zeros(2, 4, 4, 3))
        with pytest.raises(ValueError, match="uint8"):
            to_float_images(torch.zeros(4, 4, dtype=torch.uint8))


class TestImageArrayDataset:
    def test___init____wrong_shapes(self) -> None:
        with pytest.raises(ValueError, match="uint8 array"):
            ImageArrayDataset(np.zeros((2, 4), np.uint8), np.zeros(2, np.int64), [])
        with pytest.raises(ValueError, match="targets must have shape"):
            ImageArrayDataset(
                np.zeros((2, 4, 4), np.uint8), np.zeros(3, np.int64), ["a"]
            )
