"""ViMAEdit's settings (nested in EditorConfig as `vimaedit`) and their checks; the system is `nerf_edit.vimaedit`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nerf_edit import validate
from nerf_edit.errors import UsageError

SD15_MODEL_ID = "stable-diffusion-v1-5/stable-diffusion-v1-5"
IP_ADAPTER_ID = "h94/IP-Adapter"
CLIP_H14_ID = "laion/CLIP-ViT-H-14-laion2B-s32B-b79K"


@dataclass
class ViMAEditConfig:
    """ViMAEdit's settings; defaults are the official code's (run_editing_vima.py), deviations documented."""

    source_prompt: str = ""
    """Prompt describing the input image (PIE-Bench's original prompt)."""
    target_prompt: str = ""
    """Prompt describing the wanted image; empty: the instruction passed to edit() is the target prompt."""
    blend_words: str = ""
    """Blend words `SOURCE TARGET` (PIE-Bench's blended_word: the source prompt's word, the target's); one word is
    looked up in both prompts; empty: no grounding, the whole image is edited (as the official code)."""
    model: str = SD15_MODEL_ID
    """Stable Diffusion 1.x text-to-image pipeline: hub id, local folder, or `tiny` (random weights)."""
    ip_adapter: str = IP_ADAPTER_ID
    """IP-Adapter repository: hub id, local folder, or `tiny`."""
    ip_adapter_subfolder: str = "models"
    """Subfolder of the IP-Adapter weights."""
    ip_adapter_weight: str = "ip-adapter_sd15.bin"
    """IP-Adapter weight file."""
    clip_model: str = CLIP_H14_ID
    """CLIP with image and text projections giving e_s, t_s, t_t (transformers CLIPModel): hub id, folder, `tiny`."""
    image_guidance: bool = True
    """Component 1, image-embedding-enhanced denoising (IP-Adapter with ê_t); off: no IP-Adapter (ablation)."""
    ip_adapter_scale: float = 0.4
    """IP-Adapter scale."""
    ip_ordering: Literal["paper", "official"] = "paper"
    """`paper`: e_s to the source branch, ê_t to the target; `official`: the official code's batch order."""
    iterative_grounding: bool = True
    """Component 2, self-attention-guided iterative grounding; off: cross-attention only (K = 0; ablation)."""
    grounding_iterations: int = 5
    """K, iterations of M ← γM + (1−γ)·A·M."""
    gamma: float = 0.5
    """γ of the grounding iteration."""
    variance: Literal["adaptive", "zero", "uniform"] = "adaptive"
    """Component 3: `adaptive` (σ = η·σ_DDIM in the critical region, 0 elsewhere), `zero` (deterministic DDIM) or
    `uniform` (σ = η·σ_DDIM everywhere): the paper's ablation."""
    eta: float = 1.0
    """η of the sampling variance."""
    mask_threshold: float = 0.5
    """Editing mask: normalised grounding map above this (union of both branches)."""
    critical_threshold: float = 0.8
    """Critical region: normalised grounding map above this (union of both branches)."""
    blend_start: float = 0.2
    """Grounding maps are summed from this fraction of the steps on (masks exist from then)."""
    steps: int = 50
    """DDIM steps."""
    source_guidance_scale: float = 1.0
    """CFG of the source branch."""
    target_guidance_scale: float = 7.5
    """CFG of the target branch."""
    prompt_to_prompt: bool = True
    """Prompt-to-Prompt attention controls (refinement, self- and image-attention injection)."""
    cross_replace: float = 0.4
    """P2P cross-attention refinement for the first fraction of the steps."""
    self_replace: float = 0.6
    """P2P self-attention injection for the first fraction of the steps."""
    image_replace: float = 0.1
    """IP-Adapter attention injection for the first fraction of the steps."""
    timestep_offset: int = 1
    """Added to DDIM's `leading` timesteps: 1 gives 981, 961, ..., 1 for 50 steps, as the official run (its
    StableDiffusionPipeline rewrites the scheduler's steps_offset to 1); 0 gives 980, ..., 0."""
    clip_predicted_x0: bool = False
    """Clamp the corrected x̂0 latent to [−1, 1]; off, as the official run (its StableDiffusionPipeline rewrites the
    scheduler's inherited clip_sample=True to False)."""
    composite: bool = True
    """Pixels outside the final mask are the input's exactly (ours); off: the decoded latent everywhere (official)."""


# What official_vimaedit_config sets; the defaults of ViMAEditConfig otherwise (the paper's intent where they differ).
OFFICIAL_SETTINGS = {"ip_ordering": "official", "composite": False, "timestep_offset": 1}


def official_vimaedit_config(**settings) -> ViMAEditConfig:
    """The official code's run (Null-0000/ViMAEdit run_editing_vima.py), what PIE-Bench's published ViMAEdit row
    comes from: its IP-Adapter batch order (p2p_editor.py ~76-77, 104), no composite (its output is the decoded
    target latent everywhere), offset-1 timesteps. Other settings as given."""
    return ViMAEditConfig(**{**OFFICIAL_SETTINGS, **settings})


def departures_from_official(settings: ViMAEditConfig) -> dict:
    """The OFFICIAL_SETTINGS a config does not have: {name: its value}."""
    return {name: getattr(settings, name) for name, value in OFFICIAL_SETTINGS.items()
            if getattr(settings, name) != value}


def vimaedit_config(config) -> ViMAEditConfig:
    """The ViMAEdit settings an EditorConfig carries (`config.vimaedit`), or the defaults."""
    return getattr(config, "vimaedit", None) or ViMAEditConfig()


def check_vimaedit_config(settings: ViMAEditConfig, prefix: str = "--vimaedit.") -> None:
    """One-line UsageError for a bad setting (before any model loads)."""
    validate.check_range(f"{prefix}ip-adapter-scale", settings.ip_adapter_scale, 0.0)
    validate.check_choice(f"{prefix}ip-ordering", settings.ip_ordering, ("paper", "official"))
    validate.check_choice(f"{prefix}variance", settings.variance, ("adaptive", "zero", "uniform"))
    validate.check_at_least(f"{prefix}grounding-iterations", settings.grounding_iterations, 0)
    validate.check_at_least(f"{prefix}steps", settings.steps, 1)
    validate.check_at_least(f"{prefix}timestep-offset", settings.timestep_offset, 0)
    for name in ("gamma", "mask_threshold", "critical_threshold", "blend_start", "cross_replace", "self_replace",
                 "image_replace"):
        validate.check_range(prefix + name.replace("_", "-"), getattr(settings, name), 0.0, 1.0)
    validate.check_range(f"{prefix}eta", settings.eta, 0.0)
    if len(settings.blend_words.split()) > 2:
        raise UsageError(f"{prefix}blend-words {settings.blend_words!r} has more than two words: give "
                         "'SOURCE_WORD TARGET_WORD' (or one word found in both prompts)")
