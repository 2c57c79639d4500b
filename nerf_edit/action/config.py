"""EditAction's training settings (`nerf-edit-train-action`'s flags) and their checks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from nerf_edit.action.training import CheckpointedRun
from nerf_edit.errors import UsageError
from nerf_edit.model_ids import IP2P_MODEL_ID
from nerf_edit.validate import check_at_least, check_finite_above, check_range


@dataclass
class ActionTrainConfig(CheckpointedRun):
    """EditAction fine-tuning of an IP2P-architecture model on before/after action pairs."""

    data: Path = Path("data/action_pairs")
    """Pair folder with pairs.jsonl (from nerf-edit-make-action-pairs or nerf-edit-action-pairs-from-videos)."""
    output: Path = Path("outputs/editaction")
    """Folder of the trained pipeline (diffusers save_pretrained layout), checkpoints/ and logs/."""
    model: str = IP2P_MODEL_ID
    """Weights to fine-tune: hub id, local pipeline folder, or `tiny` (random weights, offline tests)."""
    vae_scaling_factor: Optional[float] = None
    """Replace the VAE's latent scaling factor (1/std of its latents) in the trained pipeline; None keeps the model's
    (SD: 0.18215). For VAEs whose latents have another spread, e.g. the random-weight `tiny` one (~5)."""
    resolution: int = 256
    """Training images are resized to this square size (the paper: 256)."""
    steps: int = 10000
    """Optimizer steps (the paper: 10 000)."""
    batch_size: int = 64
    """Pairs per process per micro-step; the global batch is batch_size x processes x accumulation (paper: 64)."""
    gradient_accumulation_steps: int = 1
    """Micro-steps whose gradients are summed before each optimizer step."""
    learning_rate: float = 1e-4
    """AdamW learning rate: the paper (§5) "follows the training of InstructPix2Pix", whose rate is 10⁻⁴ (IP2P
    paper, training details); diffusers' documented IP2P fine-tuning command uses 5·10⁻⁵."""
    lambda_action: float = 1.0
    """Weight of L_action, the contrastive action loss (0 gives plain IP2P fine-tuning)."""
    lambda_reg: float = 1.0
    """Weight of L_reg, the distance to the frozen pre-fine-tuning UNet."""
    action_error: Literal["sum", "mean"] = "sum"
    """e± of L_action: `sum` = ‖ε − ε_θ‖² over the latent (Eq. 5, the log-likelihood scale of the Bayes posterior),
    `mean` = per latent element (1/elements the temperature; see README "EditAction")."""
    negatives: Literal["disjoint", "any"] = "disjoint"
    """L_action's c_T': `disjoint` shares no content word with c_T (the paper; any other one where none does),
    `any` is any other instruction of the data (harder negatives, e.g. "left" against "right")."""
    action_timestep_fraction: float = 1.0
    """L_action/L_reg draw t from the first fraction of the schedule (1: the whole range, shared with L_static,
    as IP2P; lower: low-noise levels, where the Diffusion-Classifier reading carries most information)."""
    conditioning_dropout_prob: float = 0.05
    """IP2P's conditioning dropout for L_static (text dropped with 2p, image with 2p, both with p)."""
    freeze_cross_attention: bool = True
    """Freeze every cross-attention (`attn2`) layer, as the paper does."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""
    adam_weight_decay: float = 1e-2
    """AdamW weight decay (diffusers' IP2P default)."""
    lr_warmup_steps: int = 0
    """Linear warm-up steps of the (otherwise constant) learning rate."""
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    """Autocast precision of the UNet (fp16 needs a GPU); frozen VAE/text encoder/reference run in it too."""
    gradient_checkpointing: bool = False
    """Recompute UNet activations in the backward pass (less memory, ~30% slower)."""
    use_8bit_adam: bool = False
    """bitsandbytes' 8-bit AdamW: optimizer moments in 8 bits (bitsandbytes, CPU or CUDA; set-up installs it)."""
    seed: int = 0
    """Seed of every random draw (pairs, t, ε, dropout, negatives)."""
    def check(self) -> None:
        """UsageError (one line) on settings that cannot train."""
        for name in ("resolution", "steps", "batch_size", "gradient_accumulation_steps"):
            check_at_least("--" + name.replace("_", "-"), getattr(self, name), 1)
        if self.resolution % 8:
            raise UsageError(f"--resolution must be a multiple of 8 (the VAE downsamples 8x), got {self.resolution}")
        check_finite_above("--lambda-action", self.lambda_action, 0)
        check_finite_above("--lambda-reg", self.lambda_reg, 0)
        check_range("--learning-rate", self.learning_rate, 0, low_open=True)
        check_range("--conditioning-dropout-prob", self.conditioning_dropout_prob, 0, 1 / 3)
        check_range("--action-timestep-fraction", self.action_timestep_fraction, 0, 1, low_open=True)
        if self.vae_scaling_factor is not None:
            check_finite_above("--vae-scaling-factor", self.vae_scaling_factor, 0, low_open=True)
        self.check_run()
