"""Collecting a pool of input samples: re-exports of :mod:`lightly_krepes._inputs`.

``collect_pool`` returns ``(pool, indices)``; ``first_view`` is
:func:`lightly_krepes._inputs.first_tensor` under its earlier name.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from __future__ import annotations

from lightly_krepes._inputs import collect_pool
from lightly_krepes._inputs import first_tensor as first_view

__all__ = ["collect_pool", "first_view"]
