"""Landmark selection for Nyström approximations of kernels.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes.landmarks.kmeanspp import kmeanspp_landmarks
from lightly_krepes.landmarks.leverage import leverage_landmarks, ridge_leverage_scores
from lightly_krepes.landmarks.rpcholesky import DEFAULT_BLOCK_SIZE, rpcholesky_landmarks
from lightly_krepes.landmarks.selection import LANDMARK_METHODS, select_landmarks
from lightly_krepes.landmarks.uniform import uniform_landmarks

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "LANDMARK_METHODS",
    "kmeanspp_landmarks",
    "leverage_landmarks",
    "ridge_leverage_scores",
    "rpcholesky_landmarks",
    "select_landmarks",
    "uniform_landmarks",
]
