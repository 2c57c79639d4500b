"""Method configs registered with nerfstudio (entry points `nerfstudio.method_configs` in pyproject.toml)."""

from __future__ import annotations

import copy
import dataclasses
from typing import Sequence

from nerfstudio.cameras.camera_optimizers import CameraOptimizerConfig
from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from nerf_edit_methods.compat import allow_nerfstudio_checkpoints
from nerf_edit_methods.datamanager import WYSDataManagerConfig
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
    "--pipeline.model.num-proposal-samples-per-ray", "64", "32",
    "--pipeline.model.num-nerf-samples-per-ray", "32",
    "--pipeline.model.log2-hashmap-size", "16",
    "--pipeline.model.proposal-net-args-list.0.log2-hashmap-size", "14",
    "--pipeline.model.proposal-net-args-list.1.log2-hashmap-size", "14",
    "--pipeline.model.camera-optimizer.mode", "off",
]


def method_config(method: str, args: Sequence[str] = ()) -> TrainerConfig:
    """The config `ns-train METHOD ARGS...` would build, for in-process runs (tests, benchmarks)."""
    import tyro

    specs = {spec.config.method_name: spec for spec in (wys_method, wys_small_method, wys_tiny_method, wys_global_method)}
    if method not in specs:
        raise ValueError(f"unknown method {method!r}: one of {sorted(specs)}")
    default = copy.deepcopy(specs[method].config)
    config = tyro.cli(type(default), default=default, args=list(args))
    if config.data is not None:
        config.pipeline.datamanager.data = config.data
    return config


def _adam(lr: float, lr_final: float, max_steps: int) -> dict:
    return {
        "optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15),
        "scheduler": ExponentialDecaySchedulerConfig(lr_final=lr_final, max_steps=max_steps),
    }


def wys_trainer_config(
    method_name: str = "wys",
    rays_per_batch: int = 4096,
    editor_dtype: str = "fp32",
    editor: str = "relevance",
    use_relevance: bool = True,
) -> TrainerConfig:
    """WYS on nerfacto, with the official code's schedule: 4000 iterations, an edit every 10 steps."""
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
                eval_num_rays_per_batch=rays_per_batch,
            ),
            model=WYSModelConfig(
                eval_num_rays_per_chunk=1 << 15,
                average_init_density=0.01,
                camera_optimizer=CameraOptimizerConfig(mode="SO3xR3"),
            ),
            editor=editor,
            use_relevance=use_relevance,
            editor_dtype=editor_dtype,
        ),
        optimizers={
            "proposal_networks": _adam(1e-2, 1e-4, 200000),
            "fields": _adam(1e-2, 1e-4, 200000),
            "camera_opt": _adam(1e-3, 1e-4, 5000),
            "relevance_field": _adam(1e-2, 1e-3, 20000),
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
    config=wys_trainer_config("wys-small", editor_dtype="fp16"),
    description="WYS with InstructPix2Pix in fp16 (less GPU memory).",
)
wys_tiny_method = MethodSpecification(
    config=_tiny_memory(wys_trainer_config("wys-tiny", rays_per_batch=1024, editor_dtype="fp16")),
    description="WYS with fp16 InstructPix2Pix, 1024 rays per batch and small render chunks (least GPU memory).",
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

    config = wys_trainer_config("wys-reconstruct")
    config.max_num_iterations = 30000
    config.steps_per_save = 2000
    pipeline = config.pipeline
    config.pipeline = WYSReconstructPipelineConfig(
        datamanager=pipeline.datamanager, model=pipeline.model, editor=pipeline.editor,
        use_relevance=pipeline.use_relevance, editor_dtype=pipeline.editor_dtype,
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
