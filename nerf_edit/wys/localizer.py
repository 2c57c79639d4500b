"""Watch Your Steps' localiser: relevance maps of IP2P (official formula in `nerf_edit.wys.ops`)."""

from __future__ import annotations

from typing import Optional

import torch

from nerf_edit.editing.localizer import IP2PLocalizer, Localization
from nerf_edit.models.ip2p import EncodedInputs
from nerf_edit.wys.ops import relevance_map, relevance_mask


class RelevanceLocalizer(IP2PLocalizer):
    """Watch Your Steps: relevance of the images' latents under the instruction (conditioned on `conditioning`),
    clipped and normalised; the mask is relevance >= τ."""

    def localize_encoded(
        self, encoded: EncodedInputs, instruction: str, generator: Optional[torch.Generator] = None
    ) -> Localization:
        relevance = self.relevance(encoded, instruction, generator)
        return Localization(mask=relevance_mask(relevance, self.config.tau), soft=relevance)

    def relevance(
        self, encoded: EncodedInputs, instruction: str, generator: Optional[torch.Generator] = None
    ) -> torch.Tensor:
        """-> [B, H, W] in [0, 1], on the images' device."""
        ip2p, clean = self.ip2p, encoded.clean
        factor = ip2p.vae_scale_factor

        def predict(noisy, t):
            return ip2p.predict_text_and_null(noisy, t, encoded.condition, instruction)

        relevance = relevance_map(
            predict,
            clean,
            ip2p.scheduler.add_noise,
            timestep=int(self.config.relevance_timestep * ip2p.num_train_timesteps),
            num_samples=self.config.relevance_samples,
            iqr_k=self.config.iqr_k,
            output_size=(clean.shape[-2] * factor, clean.shape[-1] * factor),
            generator=generator,
        )
        height, width = encoded.size
        return relevance[:, :height, :width].to(encoded.images.device)
