"""Nyström feature maps of kernels at landmarks.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes.nystrom.nystrom import Nystrom, default_rcond

__all__ = ["Nystrom", "default_rcond"]
