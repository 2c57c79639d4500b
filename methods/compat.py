"""Keep nerfstudio 1.1.5 working offline and under torch >= 2.6, without users setting anything."""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from nerfstudio.utils.rich_utils import CONSOLE
from torch import nn


class UnavailableLPIPS(nn.Module):
    """Stands in for LPIPS when its AlexNet weights can't be had: returns NaN, and the metric is dropped."""

    def forward(self, *args, **kwargs) -> torch.Tensor:
        return torch.tensor(float("nan"))


@contextlib.contextmanager
def offline_lpips() -> Iterator[None]:
    """While a nerfacto model is built, make LPIPS fall back (one warning line) if its weights can't download."""
    import torchmetrics.image.lpip as lpip_module

    real_lpips = lpip_module.LearnedPerceptualImagePatchSimilarity

    def lpips_or_unavailable(*args, **kwargs):
        try:
            return real_lpips(*args, **kwargs)
        except OSError as error:  # URLError, missing cache file, ...
            CONSOLE.print(
                f"[yellow]LPIPS disabled: its AlexNet weights are not available offline ({type(error).__name__}); "
                "psnr and ssim are still reported and the LPIPS training loss falls back to L1 on its patches. "
                "Put torchvision's alexnet weights in TORCH_HOME to enable it."
            )
            return UnavailableLPIPS()

    lpip_module.LearnedPerceptualImagePatchSimilarity = lpips_or_unavailable
    try:
        yield
    finally:
        lpip_module.LearnedPerceptualImagePatchSimilarity = real_lpips


def allow_nerfstudio_checkpoints() -> None:
    """Let torch >= 2.6's `weights_only` loading read nerfstudio checkpoints (ns-render, ns-eval, --load-dir).

    Their optimizer/scheduler states hold numpy scalars; allowlisting numpy's scalar and dtype types (data, not
    code) keeps the safe loader on instead of asking users for TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD.
    """
    import numpy as np

    add_safe_globals = getattr(torch.serialization, "add_safe_globals", None)
    if add_safe_globals is None:  # torch < 2.4 loads with weights_only=False anyway
        return
    try:
        from numpy.core.multiarray import scalar
    except ImportError:  # numpy 2 moved it
        from numpy._core.multiarray import scalar  # type: ignore[no-redef]
    dtype_classes = [getattr(np.dtypes, name) for name in getattr(np.dtypes, "__all__", [])]
    add_safe_globals([scalar, np.dtype, *dtype_classes])
