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

import copy
import json
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

import torch

from nerf_edit.action.accuracy import encode_prompts
from nerf_edit.action.config import ActionTrainConfig  # noqa: F401  (the trainer's settings)
from nerf_edit.action.data import contrastive_candidates, load_pair_image, read_pairs
from nerf_edit.action.losses import draw_noise, editaction_losses, freeze_cross_attention, training_noise_scheduler
from nerf_edit.action.training import (
    find_checkpoint,
    global_indices,
    make_accelerator,
    move_into,
    reset_accelerate_state,
    resume,
    save_checkpoint,
    step_generator,
    tracker,
)
from nerf_edit.core.progress import Progress
from nerf_edit.errors import ActionDataError, UsageError
from nerf_edit.models.loading import load_ip2p_pipeline

TRAINING_FILE = "editaction_training.json"


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


@dataclass
class _Networks:
    """The pipeline being fine-tuned, its trainable UNet and the frozen parts, on the accelerator's device."""

    base: object  # the IP2P pipeline (tokenizer, scheduler config; saved with the trained UNet at the end)
    unet: torch.nn.Module
    reference_unet: Optional[torch.nn.Module]  # ε_pre of L_reg (None when λ_reg = 0)
    vae: torch.nn.Module
    text_encoder: torch.nn.Module
    noise_scheduler: object
    weight_dtype: torch.dtype


def _read_training_pairs(config: ActionTrainConfig):
    """The training pairs and each instruction's contrastive candidates; ActionDataError when they cannot train."""
    pairs = read_pairs(config.data, "train")
    if not pairs:
        raise ActionDataError(f"{str(config.data)!r} has no training pairs (split `train`)")
    candidates = contrastive_candidates([pair.instruction for pair in pairs], disjoint=config.negatives == "disjoint")
    if len(candidates) < 2:
        raise ActionDataError(f"{str(config.data)!r} has a single distinct instruction: L_action needs at least two")
    return pairs, candidates


def _load_networks(config: ActionTrainConfig, accelerator) -> _Networks:
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
    return _Networks(base, unet, reference_unet, vae, text_encoder, training_noise_scheduler(base.scheduler.config),
                     weight_dtype)


class _MicroBatches:
    """The losses of one micro-step: its pairs, t, ε, dropout and negatives drawn for the *global* batch from a
    generator seeded by (seed, micro-step); this process takes its slice."""

    def __init__(self, config: ActionTrainConfig, accelerator, networks: _Networks, pairs, candidates):
        self.config, self.networks, self.pairs, self.candidates = config, networks, pairs, candidates
        self.device = accelerator.device
        self.rank = accelerator.process_index
        self.local_batch = config.batch_size
        self.global_batch = config.batch_size * accelerator.num_processes
        self.null_text = encode_prompts(networks.base.tokenizer, networks.text_encoder, [""], self.device)  # [1, L, D]

    def losses(self, unet, micro_step: int) -> dict:
        config, networks = self.config, self.networks
        generator = step_generator(config.seed, micro_step)
        indices = global_indices(config.seed, micro_step, self.global_batch, len(self.pairs))
        shape = (self.global_batch, 4, config.resolution // 8, config.resolution // 8)
        draw = draw_noise(shape, networks.noise_scheduler.config.num_train_timesteps, generator,
                          config.action_timestep_fraction)
        picks = torch.randint(0, 2**31 - 1, (self.global_batch,), generator=generator)
        mine = slice(self.rank * self.local_batch, (self.rank + 1) * self.local_batch)
        draw = draw.slice(mine)
        batch_pairs = [self.pairs[i] for i in indices[mine]]
        negatives = [self.candidates[p.instruction][int(k) % len(self.candidates[p.instruction])]
                     for p, k in zip(batch_pairs, picks[mine])]
        latents, image_latents, text, negative_text = self._encode(batch_pairs, negatives)
        return editaction_losses(unet, networks.reference_unet, networks.noise_scheduler, latents, image_latents, text,
                                 negative_text, self.null_text, draw, config.conditioning_dropout_prob,
                                 config.lambda_action, config.lambda_reg, config.action_error)

    @torch.no_grad()
    def _encode(self, batch_pairs, negatives):
        """-> after-image latents (scaled), before-image latents, the instructions' and the negatives' embeddings"""
        resolution, networks = self.config.resolution, self.networks
        vae, dtype = networks.vae, networks.weight_dtype
        before = torch.stack([load_pair_image(p.before, resolution) for p in batch_pairs])
        after = torch.stack([load_pair_image(p.after, resolution) for p in batch_pairs])
        image_latents = vae.encode(before.to(self.device, dtype)).latent_dist.mode()
        # The posterior mode, where diffusers' script samples: SD's VAE has a posterior std of ~1e-3 (the two
        # agree), a random-weight VAE one of ~1, whose sample would bury the image under noise.
        latents = vae.encode(after.to(self.device, dtype)).latent_dist.mode() * vae.config.scaling_factor
        prompts = [p.instruction for p in batch_pairs] + negatives
        embeddings = encode_prompts(networks.base.tokenizer, networks.text_encoder, prompts, self.device)
        text, negative_text = embeddings.split(self.local_batch)
        return latents, image_latents, text, negative_text


def _optimizer_step(accelerator, config: ActionTrainConfig, unet, trainable, optimizer, lr_scheduler,
                    batches: _MicroBatches, global_step: int) -> dict:
    """One optimizer step over `gradient_accumulation_steps` micro-steps. -> the mean losses (tensors)"""
    totals = {"total": 0.0, "static": 0.0, "action": 0.0, "reg": 0.0}
    for micro in range(config.gradient_accumulation_steps):
        with accelerator.accumulate(unet):
            losses = batches.losses(unet, global_step * config.gradient_accumulation_steps + micro)
            accelerator.backward(losses["total"])
            if accelerator.sync_gradients:
                accelerator.clip_grad_norm_(trainable, config.max_grad_norm)
            optimizer.step()
            lr_scheduler.step()
            optimizer.zero_grad()
        for name in totals:
            totals[name] += losses[name].detach().float() / config.gradient_accumulation_steps
    return totals


def _step_line(done: int, total: Optional[int], rate: float, elapsed: float, status: str) -> str:
    return f"step {done}/{total} {status} ({elapsed:.1f} s)"


def train_editaction(config: ActionTrainConfig) -> Path:
    """Fine-tune, checkpoint, and write the trained IP2P pipeline to config.output; returns config.output.
    Callable any number of times in one process (each run starts from a fresh accelerate state)."""
    from diffusers.optimization import get_scheduler

    config.check()
    pairs, candidates = _read_training_pairs(config)
    resume_from = find_checkpoint(config.output, config.resume) if config.resume else None
    if config.mixed_precision == "fp16" and (config.cpu or not torch.cuda.is_available()):
        raise UsageError("--mixed-precision fp16 needs a GPU: use bf16 or no on the CPU")
    log_with = tracker(config.log_with)
    accelerator = make_accelerator(config.output, config.gradient_accumulation_steps, config.mixed_precision,
                                   config.cpu, log_with)
    try:
        networks = _load_networks(config, accelerator)
        trainable = [p for p in networks.unet.parameters() if p.requires_grad]
        optimizer = _make_optimizer(config, trainable)
        lr_scheduler = get_scheduler("constant_with_warmup" if config.lr_warmup_steps else "constant", optimizer,
                                     num_warmup_steps=config.lr_warmup_steps * accelerator.num_processes,
                                     num_training_steps=config.steps * accelerator.num_processes)
        unet, optimizer, lr_scheduler = accelerator.prepare(networks.unet, optimizer, lr_scheduler)
        global_step = resume(accelerator, config.output, config.resume, resume_from)
        if log_with:
            hyperparameters = {k: (str(v) if not isinstance(v, (int, float, bool)) else v)
                               for k, v in asdict(config).items() if v is not None}
            accelerator.init_trackers("editaction", config=hyperparameters)
        batches = _MicroBatches(config, accelerator, networks, pairs, candidates)

        progress = Progress("EditAction", config.steps, "steps", every=config.log_every, initial=global_step,
                            line=_step_line, enabled=accelerator.is_main_process)
        steps_this_run = 0
        while global_step < config.steps and (config.stop_after is None or steps_this_run < config.stop_after):
            totals = _optimizer_step(accelerator, config, unet, trainable, optimizer, lr_scheduler, batches,
                                     global_step)
            global_step += 1
            steps_this_run += 1
            logs = {f"loss_{name}": accelerator.reduce(value.reshape(1), "mean").item()
                    for name, value in totals.items()}
            accelerator.log(logs, step=global_step)
            progress.advance(status=" ".join(f"{k}={v:.4f}" for k, v in logs.items()))
            if global_step % config.checkpoint_every == 0 or global_step == config.steps or (
                config.stop_after is not None and steps_this_run == config.stop_after
            ):
                save_checkpoint(accelerator, config.output, global_step, config.checkpoints_total_limit)
        progress.close()
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            _write_result(config, networks.base, accelerator.unwrap_model(unet), global_step)
        accelerator.end_training()
    finally:
        reset_accelerate_state()
    return config.output


def _write_result(config: ActionTrainConfig, base, unet, global_step: int) -> None:
    if global_step >= config.steps:
        save_pipeline(base, unet, config.output)
        info = {"steps": global_step, "model": config.model, "config": {k: str(v) for k, v in asdict(config).items()}}
        (config.output / TRAINING_FILE).write_text(json.dumps(info, indent=2))
        print(f"wrote the trained pipeline to {config.output} (load it with --model {config.output})")
    else:
        print(f"stopped at step {global_step}/{config.steps}; continue with --resume latest")


def save_pipeline(base, unet, output: Path) -> None:
    """The base pipeline with the trained UNet, written with save_pretrained into a temporary folder and moved into
    `output` component by component, model_index.json last: a half-written folder never loads as a pipeline."""
    from diffusers import StableDiffusionInstructPix2PixPipeline

    pipe = StableDiffusionInstructPix2PixPipeline(**{**base.components, "unet": unet.to(torch.float32)})
    temporary = output / ".pipeline.tmp"
    if temporary.exists():
        shutil.rmtree(temporary)
    pipe.save_pretrained(str(temporary))
    move_into(temporary, output, "model_index.json")
