"""The EditAction trainer, on accelerate in the manner of diffusers' examples/instruct_pix2pix/train_instruct_pix2pix.py:
mixed precision, gradient accumulation, gradient checkpointing, optional 8-bit Adam, `save_state` checkpoints every
N steps and resume, tensorboard logging of the three losses, a progress bar. Several GPUs or machines:
`accelerate launch --num_processes N -m nerf_edit_scripts.train_action ...` (data parallel).

What differs from diffusers' script, and why: every random draw of a step (which pairs, t, ε,
conditioning dropout, the contrastive instruction) is made for the *global* batch from a generator seeded by
(seed, step), and each process takes its slice. A run resumed from a checkpoint therefore continues exactly as the
uninterrupted run would have, and N processes with batch B/N compute what one process with batch B computes.
"""

from __future__ import annotations

from nerf_edit.validate import UsageError

import copy
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, Optional

import torch

from nerf_edit.action.accuracy import encode_prompts
from nerf_edit.action.data import ActionDataError, contrastive_candidates, load_pair_image, read_pairs
from nerf_edit.action.losses import draw_noise, editaction_losses, freeze_cross_attention, training_noise_scheduler
from nerf_edit.loading import IP2P_MODEL_ID, load_ip2p_pipeline

CHECKPOINTS_DIR = "checkpoints"
TRAINING_FILE = "editaction_training.json"


@dataclass
class ActionTrainConfig:
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
    learning_rate: float = 5e-5
    """AdamW learning rate (the paper's value was lost; see README "EditAction" for how this was picked)."""
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
    checkpoint_every: int = 500
    """Save the full training state (accelerate save_state) every this many steps, and at the end."""
    checkpoints_total_limit: Optional[int] = 3
    """Keep only this many newest checkpoints (None keeps all)."""
    resume: Optional[str] = None
    """`latest` (newest checkpoint in OUTPUT/checkpoints, a fresh start when there is none) or a checkpoint folder."""
    stop_after: Optional[int] = None
    """Stop (with a checkpoint) after this many steps in this invocation, e.g. to fit a cluster's time limit."""
    log_with: Literal["tensorboard", "none"] = "tensorboard"
    """Loss logging (OUTPUT/logs; `tensorboard --logdir OUTPUT/logs`); skipped with a note where not installed."""
    log_every: int = 10
    """Steps between plain progress lines when stdout is not a terminal."""
    seed: int = 0
    """Seed of every random draw (pairs, t, ε, dropout, negatives)."""
    cpu: bool = False
    """Train on the CPU even where a GPU exists."""

    def check(self) -> None:
        """ValueError (one line) on settings that cannot train."""
        positive = {"resolution": self.resolution, "steps": self.steps, "batch-size": self.batch_size,
                    "gradient-accumulation-steps": self.gradient_accumulation_steps,
                    "checkpoint-every": self.checkpoint_every, "log-every": self.log_every}
        for name, value in positive.items():
            if value < 1:
                raise UsageError(f"--{name} must be >= 1, got {value}")
        if self.resolution % 8:
            raise UsageError(f"--resolution must be a multiple of 8 (the VAE downsamples 8x), got {self.resolution}")
        for name, value in {"lambda-action": self.lambda_action, "lambda-reg": self.lambda_reg}.items():
            if not math.isfinite(value) or value < 0:
                raise UsageError(f"--{name} must be a finite number >= 0, got {value}")
        if not math.isfinite(self.learning_rate) or self.learning_rate <= 0:
            raise UsageError(f"--learning-rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.conditioning_dropout_prob <= 1 / 3:
            raise UsageError(f"--conditioning-dropout-prob must be in [0, 1/3], got {self.conditioning_dropout_prob}")
        if not 0 < self.action_timestep_fraction <= 1:
            raise UsageError(f"--action-timestep-fraction must be in (0, 1], got {self.action_timestep_fraction}")
        if self.vae_scaling_factor is not None and not (math.isfinite(self.vae_scaling_factor)
                                                        and self.vae_scaling_factor > 0):
            raise UsageError(f"--vae-scaling-factor must be a finite number > 0, got {self.vae_scaling_factor}")
        if self.stop_after is not None and self.stop_after < 1:
            raise UsageError(f"--stop-after must be >= 1, got {self.stop_after}")


def _step_generator(seed: int, micro_step: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed * 1_000_003 + micro_step)


def _global_indices(seed: int, micro_step: int, global_batch: int, count: int) -> list[int]:
    """The pair indices of a global micro-batch: consecutive slices of per-epoch permutations (seeded by epoch)."""
    permutations: dict[int, torch.Tensor] = {}
    indices = []
    for position in range(micro_step * global_batch, (micro_step + 1) * global_batch):
        epoch, offset = divmod(position, count)
        if epoch not in permutations:
            permutations[epoch] = torch.randperm(count, generator=torch.Generator().manual_seed(seed * 7919 + epoch))
        indices.append(int(permutations[epoch][offset]))
    return indices


def find_checkpoint(output: Path, resume: str) -> Optional[Path]:
    """The checkpoint folder to resume from (None: fresh start); ValueError when an explicit one is missing."""
    if resume == "latest":
        found = sorted((output / CHECKPOINTS_DIR).glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1])
                       if p.name.split("-")[1].isdigit() else -1)
        found = [p for p in found if p.name.split("-")[1].isdigit()]
        return found[-1] if found else None
    path = Path(resume)
    if not path.is_dir() or not path.name.startswith("checkpoint-") or not path.name.split("-")[1].isdigit():
        raise UsageError(f"--resume {resume!r} is not a checkpoint folder (OUTPUT/{CHECKPOINTS_DIR}/checkpoint-<step>): "
                         f"pass one, or `latest`")
    return path


class _Progress:
    """tqdm on a terminal; plain `step i/N ...` lines every `every` steps otherwise (logs, CI, nohup)."""

    def __init__(self, total: int, initial: int, every: int, enabled: bool):
        self.every, self.enabled, self.total = every, enabled, total
        self.tty = enabled and sys.stdout.isatty()
        self.bar = None
        if self.tty:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=initial, desc="EditAction", dynamic_ncols=True)
        self.start = time.perf_counter()

    def update(self, step: int, logs: dict) -> None:
        if not self.enabled:
            return
        text = " ".join(f"{k}={v:.4f}" for k, v in logs.items())
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(text)
        elif step % self.every == 0 or step == self.total:
            print(f"step {step}/{self.total} {text} ({time.perf_counter() - self.start:.1f} s)", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _make_optimizer(config: ActionTrainConfig, parameters):
    if config.use_8bit_adam:
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise UsageError("--use-8bit-adam needs bitsandbytes: `pip install bitsandbytes`, "
                             "or leave the flag off") from None
        optimizer_class = bnb.optim.AdamW8bit
    else:
        optimizer_class = torch.optim.AdamW
    return optimizer_class(parameters, lr=config.learning_rate, betas=(0.9, 0.999),
                           weight_decay=config.adam_weight_decay, eps=1e-8)


def train_editaction(config: ActionTrainConfig) -> Path:
    """Fine-tune, checkpoint, and write the trained IP2P pipeline to config.output; returns config.output."""
    config.check()
    from accelerate import Accelerator
    from accelerate.utils import ProjectConfiguration
    from diffusers.optimization import get_scheduler

    pairs = read_pairs(config.data, "train")
    if not pairs:
        raise ActionDataError(f"{str(config.data)!r} has no training pairs (split `train`)")
    candidates = contrastive_candidates([pair.instruction for pair in pairs], disjoint=config.negatives == "disjoint")
    if len(candidates) < 2:
        raise ActionDataError(f"{str(config.data)!r} has a single distinct instruction: L_action needs at least two")
    resume_from = find_checkpoint(config.output, config.resume) if config.resume else None
    if config.mixed_precision == "fp16" and (config.cpu or not torch.cuda.is_available()):
        raise UsageError("--mixed-precision fp16 needs a GPU: use bf16 or no on the CPU")

    log_with = None
    if config.log_with == "tensorboard":
        try:
            import tensorboard  # noqa: F401

            log_with = "tensorboard"
        except ImportError:
            print("note: tensorboard is not installed; losses are not logged (pip install tensorboard)")
    accelerator = Accelerator(
        gradient_accumulation_steps=config.gradient_accumulation_steps,
        mixed_precision=config.mixed_precision,
        log_with=log_with,
        project_config=ProjectConfiguration(project_dir=str(config.output), logging_dir=str(config.output / "logs")),
        cpu=config.cpu,
    )
    weight_dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(accelerator.mixed_precision, torch.float32)

    base = load_ip2p_pipeline(config.model, device="cpu", dtype=torch.float32)
    if config.vae_scaling_factor is not None:  # saved with the pipeline, so every later reader uses it too
        base.vae.register_to_config(scaling_factor=config.vae_scaling_factor)
    unet = base.unet
    unet.train()
    reference_unet = None
    if config.lambda_reg > 0:
        # ε_pre: the UNet before fine-tuning. Resuming rebuilds it from --model, never from a checkpoint.
        reference_unet = copy.deepcopy(unet).requires_grad_(False).eval().to(accelerator.device, weight_dtype)
    if config.freeze_cross_attention:
        freeze_cross_attention(unet)
    if config.gradient_checkpointing:
        unet.enable_gradient_checkpointing()
    vae = base.vae.requires_grad_(False).to(accelerator.device, weight_dtype)
    text_encoder = base.text_encoder.requires_grad_(False).to(accelerator.device, weight_dtype)
    noise_scheduler = training_noise_scheduler(base.scheduler.config)

    trainable = [p for p in unet.parameters() if p.requires_grad]
    optimizer = _make_optimizer(config, trainable)
    lr_scheduler = get_scheduler("constant_with_warmup" if config.lr_warmup_steps else "constant", optimizer,
                                 num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
                                 num_training_steps=config.steps * accelerator.num_processes)
    unet, optimizer, lr_scheduler = accelerator.prepare(unet, optimizer, lr_scheduler)

    global_step = 0
    if resume_from is not None:
        accelerator.load_state(str(resume_from))
        global_step = int(resume_from.name.split("-")[1])
        accelerator.print(f"resumed from {resume_from} at step {global_step}")
    elif config.resume:
        accelerator.print(f"no checkpoint in {config.output / CHECKPOINTS_DIR}: starting from step 0")
    if log_with:
        hyperparameters = {k: (str(v) if not isinstance(v, (int, float, bool)) else v)
                           for k, v in asdict(config).items() if v is not None}
        accelerator.init_trackers("editaction", config=hyperparameters)

    null_text = encode_prompts(base.tokenizer, text_encoder, [""], accelerator.device)  # [1, L, D]
    rank, world = accelerator.process_index, accelerator.num_processes
    local_batch, global_batch = config.batch_size, config.batch_size * world
    instruction_list = sorted(candidates)

    def micro_step_losses(micro_step: int) -> dict:
        generator = _step_generator(config.seed, micro_step)
        indices = _global_indices(config.seed, micro_step, global_batch, len(pairs))
        shape = (global_batch, 4, config.resolution // 8, config.resolution // 8)
        draw = draw_noise(shape, noise_scheduler.config.num_train_timesteps, generator,
                          config.action_timestep_fraction)
        picks = torch.randint(0, 2**31 - 1, (global_batch,), generator=generator)
        mine = slice(rank * local_batch, (rank + 1) * local_batch)
        draw = draw.slice(mine)
        batch_pairs = [pairs[i] for i in indices[mine]]
        negatives = [candidates[p.instruction][int(k) % len(candidates[p.instruction])]
                     for p, k in zip(batch_pairs, picks[mine])]
        before = torch.stack([load_pair_image(p.before, config.resolution) for p in batch_pairs])
        after = torch.stack([load_pair_image(p.after, config.resolution) for p in batch_pairs])
        with torch.no_grad():
            image_latents = vae.encode(before.to(accelerator.device, weight_dtype)).latent_dist.mode()
            # The posterior mode, where diffusers' script samples: SD's VAE has a posterior std of ~1e-3 (the two
            # agree), a random-weight VAE one of ~1, whose sample would bury the image under noise.
            latents = vae.encode(after.to(accelerator.device, weight_dtype)).latent_dist.mode()
            latents = latents * vae.config.scaling_factor
            prompts = [p.instruction for p in batch_pairs] + negatives
            embeddings = encode_prompts(base.tokenizer, text_encoder, prompts, accelerator.device)
        text, negative_text = embeddings.split(local_batch)
        return editaction_losses(unet, reference_unet, noise_scheduler, latents, image_latents, text, negative_text,
                                 null_text, draw, config.conditioning_dropout_prob, config.lambda_action,
                                 config.lambda_reg, config.action_error)

    def save_checkpoint(step: int) -> None:
        folder = config.output / CHECKPOINTS_DIR / f"checkpoint-{step}"
        temporary = folder.with_name(f".{folder.name}.tmp")
        if accelerator.is_main_process and temporary.exists():
            shutil.rmtree(temporary)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(temporary))
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            if folder.exists():
                shutil.rmtree(folder)
            os.replace(temporary, folder)  # a checkpoint folder is complete or absent
            if config.checkpoints_total_limit is not None:
                older = sorted((p for p in folder.parent.glob("checkpoint-*") if p.name.split("-")[1].isdigit()),
                               key=lambda p: int(p.name.split("-")[1]))
                for stale in older[: max(0, len(older) - config.checkpoints_total_limit)]:
                    shutil.rmtree(stale)
        accelerator.wait_for_everyone()

    progress = _Progress(config.steps, global_step, config.log_every, accelerator.is_main_process)
    steps_this_run = 0
    while global_step < config.steps and (config.stop_after is None or steps_this_run < config.stop_after):
        totals = {"total": 0.0, "static": 0.0, "action": 0.0, "reg": 0.0}
        for micro in range(config.gradient_accumulation_steps):
            with accelerator.accumulate(unet):
                losses = micro_step_losses(global_step * config.gradient_accumulation_steps + micro)
                accelerator.backward(losses["total"])
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
                optimizer.step()
                lr_scheduler.step()
                optimizer.zero_grad()
            for name in totals:
                totals[name] += losses[name].detach().float() / config.gradient_accumulation_steps
        global_step += 1
        steps_this_run += 1
        logs = {f"loss_{name}": accelerator.reduce(value.reshape(1), "mean").item() for name, value in totals.items()}
        accelerator.log(logs, step=global_step)
        progress.update(global_step, logs)
        if global_step % config.checkpoint_every == 0 or global_step == config.steps or (
            config.stop_after is not None and steps_this_run == config.stop_after
        ):
            save_checkpoint(global_step)
    progress.close()

    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        if global_step >= config.steps:
            save_pipeline(base, accelerator.unwrap_model(unet), config.output)
            info = {"steps": global_step, "model": config.model, "config": {k: str(v) for k, v in asdict(config).items()}}
            (config.output / TRAINING_FILE).write_text(json.dumps(info, indent=2))
            print(f"wrote the trained pipeline to {config.output} (load it with --model {config.output})")
        else:
            print(f"stopped at step {global_step}/{config.steps}; continue with --resume latest")
    accelerator.end_training()
    return config.output


def save_pipeline(base, unet, output: Path) -> None:
    """The base pipeline with the trained UNet, written with save_pretrained into a temporary folder and moved into
    `output` component by component, model_index.json last: a half-written folder never loads as a pipeline."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline(**{**base.components, "unet": unet.to(torch.float32)})
    temporary = output / ".pipeline.tmp"
    if temporary.exists():
        shutil.rmtree(temporary)
    pipe.save_pretrained(str(temporary))
    (output / "model_index.json").unlink(missing_ok=True)
    for entry in sorted(temporary.iterdir(), key=lambda p: p.name == "model_index.json"):
        target = output / entry.name
        if target.is_dir():
            shutil.rmtree(target)
        os.replace(entry, target)
    temporary.rmdir()
