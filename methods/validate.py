"""`ns-train wys` settings checked before any model, datamanager or data-loader worker is built.

ns-train calls `set_timestamp()` on the config before it prints it, writes the run folder and builds the trainer:
`WYSTrainerConfig.set_timestamp` runs `check_trainer_config` there, inside the one exit path (`nerf_edit.errors.
exits_on_user_error`), so a bad setting stops with one `error:` line, exit status 2, and no run folder.
`WYSPipelineConfig.setup` runs `check_pipeline_config` again for in-process users (tests, benchmarks) that build
the pipeline without ns-train. Every check raises `UsageError`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import List, Optional

from nerf_edit import validate
from nerf_edit.editing.editor import check_edit_settings, check_prompt
from nerf_edit.errors import EditorError, RunNotFoundError, UsageError


# ------------------------------------------------------------------------------------------------------ data
def data_path(datamanager) -> Optional[Path]:
    """The folder (or transforms file) the datamanager will read: `--data` wins over the dataparser's own."""
    data = getattr(datamanager, "data", None) or getattr(getattr(datamanager, "dataparser", None), "data", None)
    return Path(data) if data is not None else None


def check_data(datamanager) -> None:
    """`--data` exists; for the nerfstudio dataparser, it has a transforms.json listing images that exist."""
    from nerfstudio.data.dataparsers.nerfstudio_dataparser import NerfstudioDataParserConfig

    data = data_path(datamanager)
    if data is None or (getattr(datamanager, "data", None) is None and not (Path(data) / "transforms.json").exists()
                        and Path(data) == Path(".")):
        raise UsageError("no --data given: pass the scene folder, e.g. --data data/synthetic")
    if not data.exists():
        raise UsageError(f"--data {str(data)!r} does not exist: pass the scene folder (with transforms.json and images)")
    if data.is_dir() and not any(data.iterdir()):
        raise UsageError(f"--data {str(data)!r} is empty: pass a scene folder with transforms.json and images "
                         f"(ns-process-data makes one from photos or a video)")
    if not isinstance(getattr(datamanager, "dataparser", None), NerfstudioDataParserConfig):
        return  # other dataparsers (colmap, blender, ...) have their own layouts
    transforms = data if data.suffix == ".json" else data / "transforms.json"
    if not transforms.is_file():
        raise UsageError(f"--data {str(data)!r} has no transforms.json: pass a nerfstudio scene folder "
                         f"(ns-process-data makes one from photos or a video)")
    try:
        meta = json.loads(transforms.read_text())
        frames = meta["frames"]
    except (ValueError, KeyError, TypeError, OSError) as error:
        raise UsageError(f"{str(transforms)!r} is not a nerfstudio transforms file ({type(error).__name__}): "
                         f"it needs a 'frames' list; regenerate it with ns-process-data") from error
    if not isinstance(frames, list) or not frames:
        raise UsageError(f"{str(transforms)!r} lists no frames: the scene has no images to train on")
    root = transforms.parent
    missing = [f.get("file_path") for f in frames if not isinstance(f, dict) or not f.get("file_path")
               or not (root / f["file_path"]).is_file()]
    if missing:
        raise UsageError(f"{len(missing)} of {len(frames)} images listed in {str(transforms)!r} are missing "
                         f"(e.g. {missing[0]!r}): restore the images folder or regenerate the scene")
    check_image_sizes([root / f["file_path"] for f in frames])


def check_image_sizes(paths: List[Path]) -> None:
    """Every image readable, all at one resolution (the wys datamanager keeps them in one tensor); headers only."""
    from PIL import Image, UnidentifiedImageError

    sizes = {}
    for path in paths:
        try:
            with Image.open(path) as image:
                sizes.setdefault(image.size, path)
        except (UnidentifiedImageError, OSError) as error:
            raise UsageError(f"cannot read image {str(path)!r} of --data ({type(error).__name__}): replace it or "
                             f"regenerate the scene") from error
    if len(sizes) > 1:
        examples = ", ".join(f"{p.name} {w}x{h}" for (w, h), p in list(sizes.items())[:2])
        raise UsageError(f"the images of --data have {len(sizes)} sizes ({examples}): wys needs one resolution; "
                         f"resize the dataset (e.g. ns-process-data) so every image has the same size")


# ------------------------------------------------------------------------------------------------ checkpoints
# Model settings that decide the shapes of nerfacto's parameters: a checkpoint trained with other values cannot load.
SHAPE_SETTINGS = ("implementation", "hidden_dim", "hidden_dim_color", "hidden_dim_transient", "num_levels",
                  "base_res", "max_res", "log2_hashmap_size", "features_per_level", "num_proposal_iterations",
                  "use_same_proposal_network", "proposal_net_args_list", "predict_normals",
                  "use_appearance_embedding", "appearance_embed_dim",
                  "sh_degree", "use_bilateral_grid")  # splatfacto's: the size of features_rest, a bilateral grid


def checkpoint_steps(folder: Path) -> List[int]:
    """Steps of the `step-<n>.ckpt` files in a nerfstudio checkpoint folder."""
    steps = []
    for path in folder.iterdir():
        stem = path.name[len("step-"):-len(".ckpt")] if path.name.startswith("step-") and path.name.endswith(".ckpt") else ""
        if stem.isdigit():
            steps.append(int(stem))
    return sorted(steps)


def check_checkpoint_dir(folder: Path, name: str = "--load-dir", load_step: Optional[int] = None) -> None:
    """A nerfstudio checkpoint folder (`<run>/nerfstudio_models`) holding step-*.ckpt files (and `load_step`'s)."""
    folder = Path(folder)
    if not folder.exists():
        raise RunNotFoundError(f"{name} {str(folder)!r} does not exist: pass a run's checkpoint folder, "
                               f"e.g. outputs/<scene>/nerfacto/<time>/nerfstudio_models")
    if not folder.is_dir():
        raise UsageError(f"{name} {str(folder)!r} is a file: pass the folder that holds the step-*.ckpt files")
    if (folder / "nerfstudio_models").is_dir():
        raise UsageError(f"{name} {str(folder)!r} is a run folder: pass its checkpoints, {str(folder / 'nerfstudio_models')!r}")
    names = os.listdir(folder)
    steps = checkpoint_steps(folder)
    if not steps:
        raise RunNotFoundError(f"{name} {str(folder)!r} holds no checkpoints (step-*.ckpt): pass the nerfstudio_models "
                               f"folder of a run that saved at least once")
    if len(steps) != len(names):
        # nerfstudio parses every name in the folder as a step number and would crash on the others
        others = sorted(set(names) - {f"step-{s:09d}.ckpt" for s in steps})
        raise UsageError(f"{name} {str(folder)!r} holds files other than step-*.ckpt (e.g. {others[0]!r}): "
                         f"move them out, nerfstudio reads every file there as a checkpoint")
    if load_step is not None and load_step not in steps:
        raise UsageError(f"--load-step {load_step}: {str(folder)!r} has steps {steps}: pass one of them or leave it out")


def check_loadable_run(folder: Path, model_config, name: str = "--load-dir") -> None:
    """The run that wrote `folder` trained a model whose checkpoint this model can load: nerfacto or wys, with the
    same parameter-shaping settings (read from the run's config.yml, next to its checkpoints; no weights read)."""
    import yaml
    from nerfstudio.models.nerfacto import NerfactoModelConfig
    from nerfstudio.models.splatfacto import SplatfactoModelConfig

    config_path = Path(folder).parent / "config.yml"
    if not config_path.is_file():
        return  # checkpoints copied without their config: nothing to compare (the load itself reports a mismatch)
    try:
        previous = yaml.load(config_path.read_text(), Loader=yaml.Loader)
        previous_model = previous.pipeline.model
    except Exception as error:  # noqa: BLE001 - a config we can't read (plugin not installed, other version)
        raise UsageError(f"{name}: cannot read the run's {str(config_path)!r} ({type(error).__name__}): "
                         f"pass the checkpoints of a nerfacto or wys run made with this nerfstudio") from error
    method = getattr(previous, "method_name", "?")
    if isinstance(model_config, SplatfactoModelConfig):
        family, runs, train = SplatfactoModelConfig, "splatfacto or wys-splat", "wys-splat-reconstruct"
    else:
        family, runs, train = NerfactoModelConfig, "nerfacto or wys", "wys-reconstruct"
    if not isinstance(previous_model, family):
        raise UsageError(f"{name} {str(folder)!r} is a {method!r} run ({type(previous_model).__name__}): this "
                         f"method continues {runs} runs only; train one with `ns-train {train} --data ...`")
    for setting in SHAPE_SETTINGS:
        ours, theirs = getattr(model_config, setting, None), getattr(previous_model, setting, None)
        if _comparable(ours) != _comparable(theirs):
            flag = "--pipeline.model." + setting.replace("_", "-")
            raise UsageError(f"{name} {str(folder)!r} was trained with {flag} {_comparable(theirs)}, this run has "
                             f"{_comparable(ours)}: pass the same model settings as that run")
    ours_mode = getattr(getattr(model_config, "camera_optimizer", None), "mode", None)
    theirs_mode = getattr(getattr(previous_model, "camera_optimizer", None), "mode", None)
    if ours_mode != theirs_mode:
        raise UsageError(f"{name} {str(folder)!r} was trained with --pipeline.model.camera-optimizer.mode "
                         f"{theirs_mode}, this run has {ours_mode}: pass the same mode as that run")


def _comparable(value):
    if dataclasses.is_dataclass(value):
        return dataclasses.asdict(value)
    if isinstance(value, (list, tuple)):
        return [_comparable(v) for v in value]
    return value


# ------------------------------------------------------------------------------------------------- pipeline
def check_pipeline_config(config, nerf_device: str) -> None:
    """Every WYSPipelineConfig setting and the data folder; `nerf_device` is the NeRF's (for editing.device auto)."""
    p = "--pipeline."
    if not getattr(config, "makes_edits", True):  # wys-reconstruct: no prompt, no editor
        check_patch_settings(config)
        check_data(config.datamanager)
        return
    validate.check_text(f"{p}prompt", config.prompt, "turn the ball blue")
    validate.check_at_least(f"{p}edit-rate", config.edit_rate, 1)
    validate.check_at_least(f"{p}edit-count", config.edit_count, 1)
    validate.check_at_least(f"{p}edit-batch", config.edit_batch, 1)
    validate.check_choice(f"{p}edit-schedule", config.edit_schedule, ("rate", "sweep"))
    validate.check_at_least(f"{p}sweep-every", config.sweep_every, 1)
    validate.check_range(f"{p}lower-bound", config.lower_bound, 0, 1, low_open=True)
    validate.check_range(f"{p}upper-bound", config.upper_bound, 0, 1, low_open=True)
    if config.lower_bound > config.upper_bound:
        raise UsageError(f"need {p}lower-bound <= {p}upper-bound, got {config.lower_bound} and {config.upper_bound}")
    validate.check_at_least(f"{p}relevance-warmup-steps", config.relevance_warmup_steps, 0)
    validate.check_at_least(f"{p}edit-start-step", config.edit_start_step, 0)
    validate.check_seed(config.seed, f"{p}seed")
    if hasattr(config, "freeze_threshold"):  # wys-splat
        validate.check_range(f"{p}freeze-threshold", config.freeze_threshold, 0, 1)
    check_patch_settings(config)
    editor = check_edit_settings(config.editor, config.editing, f"{p}editing.", f"{p}editor")
    try:
        check_prompt(editor, config.prompt)
    except EditorError as error:
        raise EditorError(f"{p}prompt: {error}") from None
    editing = config.editing
    if editing.device == "auto":  # the NeRF's device
        validate.check_device(nerf_device, "--machine.device-type")
    check_data(config.datamanager)


def check_patch_settings(config) -> None:
    """The LPIPS loss needs the datamanager to sample whole patches of the model's patch size."""
    model, datamanager = config.model, config.datamanager
    if not getattr(model, "use_lpips", False):
        return
    size = model.patch_size
    validate.check_at_least("--pipeline.model.patch-size", size, 1)
    if getattr(datamanager, "patch_size", 1) != size:
        raise UsageError(f"the LPIPS loss compares {size}x{size} patches but the datamanager samples "
                         f"{datamanager.patch_size}x{datamanager.patch_size}: pass --pipeline.datamanager.patch-size "
                         f"{size}, or --pipeline.model.use-lpips False")
    if datamanager.train_num_rays_per_batch < size * size:
        raise UsageError(f"{datamanager.train_num_rays_per_batch} rays per batch hold no {size}x{size} patch: use at "
                         f"least {size * size} rays, a smaller --pipeline.model.patch-size (and datamanager's), or "
                         f"--pipeline.model.use-lpips False")


def check_trainer_config(config) -> None:
    """The whole `ns-train wys` config: machine, checkpoint to continue from, pipeline and data."""
    import torch

    machine = config.machine
    if machine.device_type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError("ns-train trains on a CUDA GPU by default but none is available here: pass "
                             "--machine.device-type cpu (README: the light CPU settings)")
        if machine.num_devices > torch.cuda.device_count():
            raise UsageError(f"--machine.num-devices {machine.num_devices}: this machine has "
                             f"{torch.cuda.device_count()} GPU(s)")
    elif machine.device_type == "mps" and not torch.backends.mps.is_available():
        raise UsageError("--machine.device-type mps: MPS is not available here: pass --machine.device-type cpu")
    if config.load_dir is not None:
        check_checkpoint_dir(Path(config.load_dir), "--load-dir", config.load_step)
        check_loadable_run(Path(config.load_dir), config.pipeline.model)
    if config.load_checkpoint is not None and not Path(config.load_checkpoint).is_file():
        raise UsageError(f"--load-checkpoint {str(config.load_checkpoint)!r} is not a file: pass a step-*.ckpt file")
    if config.load_checkpoint is not None:
        check_loadable_run(Path(config.load_checkpoint).parent, config.pipeline.model, "--load-checkpoint")
    device = "cuda:0" if machine.device_type == "cuda" else machine.device_type
    check_pipeline_config(config.pipeline, device)


def read_run_config(run: Path):
    """The pipeline settings of a run's config.yml (nerfstudio's YAML), or None where there is none or it can't be
    read (a foreign run: treated as one without edits)."""
    import yaml

    path = Path(run) / "config.yml"
    if not path.is_file():
        return None
    try:
        return yaml.load(path.read_text(), Loader=yaml.Loader).pipeline
    except Exception:  # noqa: BLE001 - a foreign run's config: treat it as a run without edits
        return None


# ------------------------------------------------------------------------------------------------ clean-up
def remove_unused_run_folder(base_dir: Path, output_dir: Path) -> None:
    """After a late usage error: delete the run folder ns-train made if it holds nothing but its config (and empty
    folders), and the empty folders above it up to `output_dir`. Anything else in it is left alone."""
    base_dir = Path(base_dir)
    if not base_dir.is_dir():
        return
    files = [p for p in base_dir.rglob("*") if p.is_file()]
    if any(p != base_dir / "config.yml" for p in files):
        return
    for path in files:
        path.unlink()
    for folder in sorted((p for p in base_dir.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
        folder.rmdir()
    folder = base_dir
    stop_at = Path(os.path.abspath(output_dir))
    while Path(os.path.abspath(folder)) != stop_at and folder.is_dir() and not any(folder.iterdir()):
        folder.rmdir()
        folder = folder.parent
