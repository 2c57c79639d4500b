"""Method configs of `wys-splat` (entry points in pyproject.toml): WYS on splatfacto."""

from __future__ import annotations

from nerfstudio.configs.base_config import ViewerConfig
from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig
from nerfstudio.engine.optimizers import AdamOptimizerConfig
from nerfstudio.engine.schedulers import ExponentialDecaySchedulerConfig
from nerfstudio.engine.trainer import TrainerConfig
from nerfstudio.plugins.types import MethodSpecification

from nerf_edit_methods.compat import allow_nerfstudio_checkpoints
from nerf_edit_methods.editor_settings import wys_editing
from nerf_edit_methods.splat.datamanager import WYSSplatDataManagerConfig
from nerf_edit_methods.splat.model import WysSplatModelConfig
from nerf_edit_methods.splat.pipeline import WYSSplatPipelineConfig, WYSSplatReconstructPipelineConfig
from nerf_edit_methods.trainer import WYSTrainerConfig

allow_nerfstudio_checkpoints()

# The light CPU configuration of the splat methods (tests, README): the pure-torch renderer, a scene with a seed point
# cloud (make_scene --points) and few Gaussians. On a GPU leave these out.
LIGHT_CPU_SPLAT_ARGS = [
    "--machine.device-type", "cpu",
    "--vis", "tensorboard",
    "--pipeline.model.sh-degree", "1",
    # splatfacto downscales images early in training (by 2 per level until resolution-schedule steps): small views
    # are small enough already
    "--pipeline.model.num-downscales", "0",
]


def _adam(lr: float, lr_final: float | None = None, max_steps: int = 30000, **schedule) -> dict:
    """Adam as splatfacto's config has it (eps 1e-15); a scheduler only where splatfacto has one."""
    scheduler = (None if lr_final is None
                 else ExponentialDecaySchedulerConfig(lr_final=lr_final, max_steps=max_steps, **schedule))
    return {"optimizer": AdamOptimizerConfig(lr=lr, eps=1e-15), "scheduler": scheduler}


def splatfacto_optimizers() -> dict:
    """splatfacto's optimisers (nerfstudio 1.1.5 configs/method_configs.py lines 607-644), and the relevance's: a
    logit per Gaussian, at the opacities' rate (also a logit)."""
    return {
        "means": _adam(1.6e-4, 1.6e-6),
        "features_dc": _adam(0.0025),
        "features_rest": _adam(0.0025 / 20),
        "opacities": _adam(0.05),
        "scales": _adam(0.005),
        "quats": _adam(0.001),
        "camera_opt": _adam(1e-4, 5e-7, warmup_steps=1000, lr_pre_warmup=0),
        "bilateral_grid": _adam(2e-3, 1e-4, warmup_steps=1000, lr_pre_warmup=0),
        "relevance": _adam(0.05),
    }


def wys_splat_trainer_config(method_name: str = "wys-splat", editor: str = "relevance", use_relevance: bool = True,
                             editor_dtype: str = "fp32") -> TrainerConfig:
    """WYS's schedule and editor settings (configs.wys_trainer_config) on splatfacto's model, data and optimisers:
    4000 iterations after the reconstruction it continues, an edit every 10 steps."""
    return WYSTrainerConfig(
        method_name=method_name,
        steps_per_eval_image=500,
        steps_per_eval_batch=0,
        steps_per_save=250,
        save_only_latest_checkpoint=True,
        max_num_iterations=4000,
        mixed_precision=False,  # as splatfacto
        pipeline=WYSSplatPipelineConfig(
            datamanager=WYSSplatDataManagerConfig(dataparser=NerfstudioDataParserConfig(load_3D_points=True),
                                                  cache_images_type="uint8"),
            model=WysSplatModelConfig(),
            editor=editor,
            use_relevance=use_relevance,
            freeze_irrelevant=use_relevance,
            editing=wys_editing(editor_dtype),
        ),
        optimizers=splatfacto_optimizers(),
        viewer=ViewerConfig(num_rays_per_chunk=1 << 15),
        vis="viewer",
    )


def wys_splat_reconstruct_trainer_config() -> TrainerConfig:
    """splatfacto's reconstruction (its 30000 iterations) through the splat model, with no editor: works offline,
    and `ns-train wys-splat --load-dir <run>/nerfstudio_models` continues from it with edits."""
    config = wys_splat_trainer_config("wys-splat-reconstruct")
    config.max_num_iterations = 30000
    config.steps_per_save = 2000
    pipeline = config.pipeline
    config.pipeline = WYSSplatReconstructPipelineConfig(datamanager=pipeline.datamanager, model=pipeline.model,
                                                        editing=pipeline.editing)
    return config


wys_splat_method = MethodSpecification(
    config=wys_splat_trainer_config(),
    description="Watch Your Steps on Gaussian splatting: relevance per Gaussian, relevance-guided InstructPix2Pix "
                "edits, irrelevant Gaussians frozen (continue a splatfacto or wys-splat-reconstruct run).",
)
wys_splat_small_method = MethodSpecification(
    config=wys_splat_trainer_config("wys-splat-small", editor_dtype="fp16"),
    description="wys-splat with InstructPix2Pix in fp16, for less GPU memory.",
)
wys_splat_global_method = MethodSpecification(
    config=wys_splat_trainer_config("wys-splat-global", editor="global", use_relevance=False),
    description="WYS's loop with global IP2P edits, no relevance and nothing frozen (an ablation; instruct-gs2gs's "
                "own schedule is wys-splat-igs2gs).",
)
def igs2gs_trainer_config() -> TrainerConfig:
    """instruct-gs2gs (cvachha/instruct-gs2gs) as its code runs, on our splat model with relevance and freezing off,
    for comparisons that mean "against the baseline users know": a sweep editing every view once, one per step,
    every 2500 steps (igs2gs_pipeline.py ~49, 106-147); noise levels in [0.70, 0.98] (~53-55; ip2p.py ~129-133),
    20 diffusion steps, text guidance 12.5, image guidance 1.5, IP2P in fp16 (~45-51, 59); 7500 iterations
    (igs2gs_config.py ~45); splatfacto's learning rates but the camera's 1e-3 -> 5e-5, its gradients accumulated over
    100 steps (~47, 54-82); splatfacto's loss,
    0.8·L1 + 0.2·(1 − SSIM): its L1 + LPIPS override is inside a string (igs2gs.py ~51-89), so it never runs.
    Where we differ: edits start from the noised render with our img2img schedule (nerf_edit.models.ip2p), and a
    swept view trains at its datamanager's turn, not at the step it is edited."""
    config = wys_splat_trainer_config("wys-splat-igs2gs", editor="global", use_relevance=False, editor_dtype="fp16")
    config.max_num_iterations = 7500
    config.steps_per_save = 500
    pipeline, editing = config.pipeline, config.pipeline.editing
    pipeline.edit_schedule, pipeline.sweep_every = "sweep", 2500
    pipeline.refine_in_edit = False  # loaded from a finished splatfacto run, it never densifies again either
    pipeline.lower_bound, pipeline.upper_bound = 0.70, 0.98
    editing.steps, editing.guidance_scale, editing.image_guidance_scale = 20, 12.5, 1.5
    config.optimizers["camera_opt"] = _adam(1e-3, 5e-5)  # no warm-up (igs2gs_config.py ~80-83)
    config.gradient_accumulation_steps = {"camera_opt": 100}  # ~47 (its 'color' and 'shs' name no group of ours)
    return config


wys_splat_igs2gs_method = MethodSpecification(
    config=igs2gs_trainer_config(),
    description="instruct-gs2gs's schedule on the wys-splat model (a sweep of global IP2P edits every 2500 steps, "
                "noise 0.70-0.98, 7500 iterations): the baseline, for comparison.",
)
wys_splat_reconstruct_method = MethodSpecification(
    config=wys_splat_reconstruct_trainer_config(),
    description="Reconstruction only (splatfacto through the wys-splat model, no edits): works offline; "
                "continue with `ns-train wys-splat --load-dir <run>/nerfstudio_models`.",
)
