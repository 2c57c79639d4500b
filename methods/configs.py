"""Method configs registered with nerfstudio (entry points `nerfstudio.method_configs` in pyproject.toml)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Optional, Sequence

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from nerf_edit_methods.compat import allow_nerfstudio_checkpoints
from nerf_edit_methods.datamanager import WYSDataManagerConfig
from nerf_edit_methods.editor_settings import wys_editing
from nerf_edit_methods.model import WYSModelConfig
from nerf_edit_methods.pipeline import WYSPipelineConfig
from nerf_edit_methods.trainer import WYSTrainerConfig

# ns-render / ns-eval / --load-dir import this module through the entry points before loading checkpoints.
allow_nerfstudio_checkpoints()


# The light CPU configuration (README, tests, benchmarks): ~0.15 s/iteration on a 64x64 scene with 2 cores.
LIGHT_CPU_ARGS = [
    "--machine.device-type", "cpu",
    "--vis", "tensorboard",
    "--pipeline.model.implementation", "torch",
    "--pipeline.datamanager.train-num-rays-per-batch", "512",
    # 512 rays are half a 32x32 patch, and LPIPS has no weights offline: plain L1 on random rays.
    "--pipeline.datamanager.patch-size", "1",
    "--pipeline.model.use-lpips", "False",
    "--pipeline.model.num-proposal-samples-per-ray", "64", "32",
    "--pipeline.model.num-nerf-samples-per-ray", "32",
    "--pipeline.model.log2-hashmap-size", "16",
    "--pipeline.model.proposal-net-args-list.0.log2-hashmap-size", "14",
    "--pipeline.model.proposal-net-args-list.1.log2-hashmap-size", "14",
    "--pipeline.model.camera-optimizer.mode", "off",
    # Eval renders (dataset updates, relevance targets, ns-render, ns-eval) in 512-ray chunks: on a CPU the default
    # 32768 rays at once run 2.5-3.5x slower (cache misses), with the same pixels (measured on a 96² view).
    "--pipeline.model.eval-num-rays-per-chunk", "512",
]


def method_config(method: str, args: Sequence[str] = ()) -> TrainerConfig:
    """The config `ns-train METHOD ARGS...` would build, for in-process runs (tests, benchmarks)."""
    import tyro

    from nerf_edit_methods.splat import configs as splat

    methods = (wys_method, wys_small_method, wys_tiny_method, wys_global_method, wys_reconstruct_method,
               splat.wys_splat_method, splat.wys_splat_small_method, splat.wys_splat_global_method,
               splat.wys_splat_igs2gs_method, splat.wys_splat_reconstruct_method)
    specs = {spec.config.method_name: spec for spec in methods}
    if method not in specs:
        raise ValueError(f"unknown method {method!r}: one of {sorted(specs)}")
    default = copy.deepcopy(specs[method].config)
    # FlagConversionOff: booleans take a value (`--x False`), as ns-train's own parser does.
    config = tyro.cli(tyro.conf.FlagConversionOff[type(default)], default=default, args=list(args))
    if config.data is not None:
        config.pipeline.datamanager.data = config.data
    return config


def _adam(lr: float, lr_final: Optional[float] = None, max_steps: int = 200000) -> dict:
    """Adam; constant learning rate unless `lr_final` is given (exponential decay over `max_steps`).

    A constant rate is still a scheduler (decaying from lr to lr): nerfstudio restores every scheduler a checkpoint
    holds by name, so a run without one could not continue from nerfacto's or wys-reconstruct's checkpoints."""
    scheduler = ExponentialDecaySchedulerConfig(lr_final=lr if lr_final is None else lr_final, max_steps=max_steps)
    return {"optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": scheduler}


# LPIPS compares patches of this side (instruct-nerf2nerf / WYS: 32).
LPIPS_PATCH = 32


def wys_trainer_config(
    method_name: str = "wys",
    rays_per_batch: int = 16384,
    editor_dtype: str = "fp32",
    editor: str = "relevance",
    use_relevance: bool = True,
    use_lpips: bool = True,
) -> TrainerConfig:
    """WYS on nerfacto with the official code's training (in2n_config.py, in2n.py): 4000 iterations, an edit
    every 10 steps, 16384 rays, L1 + LPIPS on 32x32 patches, constant learning rates, cameras fixed while editing.
    """
    patch_size = LPIPS_PATCH if use_lpips else 1
    return WYSTrainerConfig(
        method_name=method_name,
        steps_per_eval_batch=500,
        steps_per_eval_image=500,
        steps_per_save=250,
        save_only_latest_checkpoint=True,
        max_num_iterations=4000,
        mixed_precision=True,
        pipeline=WYSPipelineConfig(
            datamanager=WYSDataManagerConfig(
                dataparser=NerfstudioDataParserConfig(),
                train_num_rays_per_batch=rays_per_batch,
                eval_num_rays_per_batch=4096,
                patch_size=patch_size,
            ),
            model=WYSModelConfig(
                eval_num_rays_per_chunk=1 << 15,
                average_init_density=0.01,
                camera_optimizer=CameraOptimizerConfig(mode="SO3xR3"),
                use_lpips=use_lpips,
                patch_size=patch_size,
            ),
            editor=editor,
            use_relevance=use_relevance,
            editing=wys_editing(editor_dtype),
        ),
        optimizers={
            # Constant, as the official code (in2n_config.py ~30-45: scheduler None).
            "proposal_networks": _adam(1e-2),
            "fields": _adam(1e-2),
            # Used only before editing starts (a reconstruction with --pipeline.edit-start-step); frozen after.
            "camera_opt": _adam(1e-3, 1e-4, 5000),
            "relevance_field": _adam(1e-2),
        },
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


def _tiny_memory(config: TrainerConfig) -> TrainerConfig:
    config.pipeline.model.eval_num_rays_per_chunk = 1 << 13
    config.viewer = dataclasses.replace(config.viewer, num_rays_per_chunk=1 << 13)
    return config


wys_method = MethodSpecification(
    config=wys_trainer_config("wys"),
    description="Watch Your Steps: relevance-guided InstructPix2Pix edits of a nerfacto scene (IP2P in fp32).",
)
wys_small_method = MethodSpecification(
    config=wys_trainer_config("wys-small", rays_per_batch=8192, editor_dtype="fp16"),
    description="WYS with InstructPix2Pix in fp16 and half the rays (8192: 8 LPIPS patches), for less GPU memory.",
)
wys_tiny_method = MethodSpecification(
    config=_tiny_memory(wys_trainer_config("wys-tiny", rays_per_batch=4096, editor_dtype="fp16", use_lpips=False)),
    description="WYS with fp16 InstructPix2Pix, a quarter of the rays (4096), no LPIPS (as in2n-tiny) and small "
                "render chunks (least GPU memory).",
)
wys_global_method = MethodSpecification(
    config=wys_trainer_config("wys-global", editor="global", use_relevance=False),
    description="The same loop with global IP2P edits and no relevance (instruct-nerf2nerf's behaviour), for comparison.",
)


# ---------------------------------------------------------------------------------- offline reconstruction
def wys_reconstruct_trainer_config() -> TrainerConfig:
    """nerfacto's reconstruction (its 30000 iterations) through the wys model, with no editor: works offline, and
    `ns-train wys --load-dir <run>/nerfstudio_models` continues from it with edits."""
    from nerf_edit_methods.reconstruct import WYSReconstructPipelineConfig

    config = wys_trainer_config("wys-reconstruct", use_lpips=False)  # nerfacto's plain reconstruction: random rays
    config.max_num_iterations = 30000
    config.steps_per_save = 2000
    # nerfacto's learning-rate schedule for a reconstruction (the constant rates are the editing recipe's).
    config.optimizers.update({"proposal_networks": _adam(1e-2, 1e-4, 200000), "fields": _adam(1e-2, 1e-4, 200000)})
    pipeline = config.pipeline
    config.pipeline = WYSReconstructPipelineConfig(
        datamanager=pipeline.datamanager, model=pipeline.model, editor=pipeline.editor,
        use_relevance=pipeline.use_relevance, editing=pipeline.editing,
    )
    return config


wys_reconstruct_method = MethodSpecification(
    config=wys_reconstruct_trainer_config(),
    description="Reconstruction only (nerfacto through the wys model, no edits): works offline; "
    "continue with `ns-train wys --load-dir <run>/nerfstudio_models`.",
)

# `make demo` on a CPU (scripts/demo.sh) and its test: reconstruct the bundled scene with wys-reconstruct, then
# edit from that checkpoint with wys; both add these to LIGHT_CPU_ARGS.
DEMO_CPU_RECONSTRUCT_ARGS = ["--max-num-iterations", "300"]
DEMO_CPU_EDIT_ARGS = ["--max-num-iterations", "200", "--pipeline.edit-rate", "5",
                      "--pipeline.relevance-warmup-steps", "20"]
