"""The settings every editor takes (`EditorConfig`): the 2D CLI's flags, nested in 3D as `--pipeline.editing.*`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Tuple

from nerf_edit.config.vimaedit import ViMAEditConfig
from nerf_edit.config.zone import ZoneConfig
from nerf_edit.model_ids import IP2P_MODEL_ID


@dataclass
class EditorConfig:
    """Settings shared by all editors; defaults are WYS's (official code)."""

    model: str = IP2P_MODEL_ID
    """IP2P-architecture weights: hub id, local directory, or `tiny` (random weights, offline tests)."""
    device: str = "auto"
    """Device the diffusion model runs on (`auto`: cuda when available, else cpu)."""
    dtype: str = "auto"
    """fp32/fp16/bf16; `auto` is fp16 on CUDA, fp32 on CPU."""
    channels_last: bool = False
    """UNet and VAE in channels-last memory layout (faster convolutions on CUDA tensor cores)."""
    compile: bool = False
    """torch.compile the UNet: the first edits compile (minutes), later ones run faster; worth it for long runs."""
    vae_tiling: bool = False
    """diffusers' VAE tiling and slicing: views larger than the VAE's tile (512² in SD) are encoded and decoded in
    overlapping tiles, a batch one image at a time (less GPU memory on large views; faint tile seams possible)."""
    steps: int = 100
    """Denoising steps per edit (official WYS 2D: 100; the 3D method uses 20)."""
    guidance_scale: float = 7.5
    """Text guidance s_T."""
    image_guidance_scale: float = 1.0
    """Image guidance s_I (official WYS 2D: 1.0; the 3D method uses 1.5)."""
    start_from: Literal["auto", "input", "noise"] = "auto"
    """A full-strength edit starts from `input`: the input's latents noised to the first timestep (official WYS
    2D, t ≈ 0.99 T), or from pure `noise` (diffusers' IP2P pipeline, ZONE); `auto` is the editor's own (input for
    relevance, noise for global and zone). Edits with strength < 1 always start from the noised input."""
    latent_mask: Literal["any", "nearest"] = "any"
    """How the pixel mask becomes the latent mask: `any` (a latent cell is edited if any of its pixels is) or
    `nearest` (nearest-neighbour downsampling, as the official WYS 3D code)."""
    tau: float = 0.5
    """Relevance threshold of the edit mask (relevance >= tau is edited; 0 edits everywhere)."""
    dilate_px: int = 0
    """Grow the edit mask by this many pixels before editing and compositing."""
    feather_px: int = 0
    """Soften the composite edge over this many pixels inside the (dilated) mask."""
    relevance_timestep: float = 0.8
    """Relevance is measured at this fraction of the training timesteps."""
    relevance_samples: int = 1
    """Noise draws averaged per relevance map."""
    iqr_k: float = 1.5
    """Relevance outliers above Q3 + k·IQR are clipped (1.5 in 2D, 2 in 3D)."""
    adaptive_variance: bool = False
    """ViMAEdit's spatially adaptive variance in IP2P editors: DDIM noise (η = 1) where the localiser's soft map is
    above 0.8 (its critical region), deterministic DDIM elsewhere. Needs a localiser with a soft map."""
    localizer: str = "auto"
    """Where edits may act: `relevance` (WYS maps), `zone` (IP2P attention + SAM), `auto` (the editor's own), or
    an import path `package.module:Class` (see nerf_edit.editing.localizer)."""
    step_hooks: Tuple[str, ...] = ()
    """Step hooks added to every IP2P denoising loop, by import path `package.module:Name`: a class is built per
    edit as `Name(config, ip2p)`, a function is used as it is; either is called after each scheduler step as
    `hook(step) -> latents` (see nerf_edit.core.guided.Step), before the mask's blend."""
    zone: ZoneConfig = field(default_factory=ZoneConfig)
    """ZONE settings (used by the zone editor and the zone localizer)."""
    vimaedit: ViMAEditConfig = field(default_factory=ViMAEditConfig)
    """ViMAEdit settings (used by the vimaedit editor and the vimaedit localizer)."""
