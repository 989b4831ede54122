"""Self-supervised losses of KREPES that Lightly does not ship.

SimCLR, BYOL, VICReg and Barlow Twins come from :mod:`lightly.loss`.

- [0] KREPES, 2025, arXiv 2509.24467
"""

from lightly_krepes.loss.kernel_pca_loss import KernelPCALoss
from lightly_krepes.loss.spectral_contrastive_loss import SpectralContrastiveLoss

__all__ = ["KernelPCALoss", "SpectralContrastiveLoss"]
