import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import pytest
from nerfstudio.plugins.types import MethodSpecification
from waiting import HANG_GUARD

METHODS = {"wys", "wys-small", "wys-tiny", "wys-global", "wys-reconstruct",
           "wys-splat", "wys-splat-small", "wys-splat-global", "wys-splat-igs2gs", "wys-splat-reconstruct"}


def test_entry_points_register_our_methods_under_their_names():
    found = {ep.name: ep for ep in entry_points(group="nerfstudio.method_configs") if ep.value.startswith("nerf_edit_methods.")}
    assert set(found) == METHODS
    for name, ep in found.items():
        spec = ep.load()
        assert isinstance(spec, MethodSpecification)
        assert spec.config.method_name == name  # ns-train names a method by config.method_name
    # no name shadows one of nerfstudio's own methods or another installed plug-in's (e.g. in2n's)
    from nerfstudio.configs.method_configs import method_configs as nerfstudio_methods

    others = {ep.name for ep in entry_points(group="nerfstudio.method_configs")
              if not ep.value.startswith("nerf_edit_methods.")}
    assert not METHODS & (set(nerfstudio_methods) | others)


def test_presets_differ_as_documented():
    from nerf_edit_methods.configs import wys_global_method, wys_method, wys_small_method, wys_tiny_method

    assert wys_method.config.pipeline.editing.dtype == "fp32"
    assert wys_small_method.config.pipeline.editing.dtype == "fp16"
    assert wys_global_method.config.pipeline.editor == "global" and not wys_global_method.config.pipeline.use_relevance
    rays = {spec.config.method_name: spec.config.pipeline.datamanager.train_num_rays_per_batch
            for spec in (wys_method, wys_small_method, wys_tiny_method)}
    assert rays["wys-small"] * 2 == rays["wys"] and rays["wys-tiny"] * 4 == rays["wys"]  # README: ½ and ¼ of wys
    readme = " ".join((Path(__file__).resolve().parents[2] / "docs" / "3d.md").read_text().split())  # the settings page
    config = wys_method.config
    assert f"an edit every {config.pipeline.edit_rate} steps; {config.max_num_iterations} iterations" in readme


def test_reconstruct_preset_is_wys_without_an_editor():
    """wys-reconstruct's checkpoint must load into wys: the same parameter-shaping model settings (what --load-dir
    compares) and camera optimiser. It reconstructs as nerfacto does (random rays, no LPIPS) and makes no edits."""
    from nerf_edit_methods.configs import wys_method, wys_reconstruct_method
    from nerf_edit_methods.validate import SHAPE_SETTINGS

    reconstruct, wys = wys_reconstruct_method.config, wys_method.config
    for setting in SHAPE_SETTINGS:
        assert getattr(reconstruct.pipeline.model, setting, None) == getattr(wys.pipeline.model, setting, None), setting
    assert reconstruct.pipeline.model.camera_optimizer.mode == wys.pipeline.model.camera_optimizer.mode
    assert not reconstruct.pipeline.model.use_lpips and reconstruct.pipeline.datamanager.patch_size == 1
    assert reconstruct.optimizers.keys() == wys.optimizers.keys()
    from nerfstudio.configs.method_configs import method_configs as nerfstudio_methods

    assert reconstruct.max_num_iterations == nerfstudio_methods["nerfacto"].max_num_iterations  # nerfacto's schedule
    assert not reconstruct.pipeline.makes_edits and wys.pipeline.makes_edits  # no prompt needed, no weights loaded


@pytest.mark.parametrize("source", ["nerfacto", "wys-reconstruct", "wys"])
def test_every_wys_preset_can_continue_from_a_reconstruction(source):
    """nerfstudio restores a checkpoint's optimizers and schedulers by name (Optimizers.load_schedulers:
    `self.schedulers[k].load_state_dict(v)` for every k the checkpoint holds): each one the reconstruction saved
    must exist in the preset that continues from it."""
    from nerfstudio.configs.method_configs import method_configs

    from nerf_edit_methods.configs import (
        wys_global_method,
        wys_method,
        wys_reconstruct_method,
        wys_small_method,
        wys_tiny_method,
    )

    sources = {"nerfacto": method_configs["nerfacto"], "wys-reconstruct": wys_reconstruct_method.config,
               "wys": wys_method.config}
    saved = sources[source].optimizers
    for preset in (wys_method, wys_small_method, wys_tiny_method, wys_global_method):
        optimizers = preset.config.optimizers
        for name, settings in saved.items():
            assert name in optimizers, (preset.config.method_name, name)
            if settings["scheduler"] is not None:
                assert optimizers[name]["scheduler"] is not None, (preset.config.method_name, name)


def test_no_generic_top_level_module_is_installed():
    import nerf_edit_methods

    top_levels = {ep.value.split(":")[0].split(".")[0] for ep in entry_points(group="console_scripts") if "nerf_edit" in ep.value}
    assert top_levels == {"nerf_edit_scripts"}
    assert nerf_edit_methods.__name__ == "nerf_edit_methods"
    result = subprocess.run([sys.executable, "-c", "import methods"], capture_output=True, text=True, cwd="/")
    assert result.returncode != 0


def test_ns_train_help_lists_our_methods_without_errors():
    result = subprocess.run([str(Path(sys.executable).parent / "ns-train"), "--help"], capture_output=True, text=True, timeout=HANG_GUARD)
    assert result.returncode == 0
    for name in METHODS:
        assert name in result.stdout
    assert "Could not" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr


def test_splat_reconstruct_preset_is_wys_splat_without_an_editor():
    """wys-splat-reconstruct's checkpoint must load into wys-splat (the same Gaussian-shaping settings, every
    optimiser entry, relevance included), and splatfacto's schedule is its own."""
    from nerfstudio.configs.method_configs import method_configs as nerfstudio_methods

    from nerf_edit_methods.splat.configs import wys_splat_method, wys_splat_reconstruct_method
    from nerf_edit_methods.validate import SHAPE_SETTINGS

    reconstruct, wys_splat = wys_splat_reconstruct_method.config, wys_splat_method.config
    for setting in SHAPE_SETTINGS:
        assert getattr(reconstruct.pipeline.model, setting, None) == getattr(wys_splat.pipeline.model, setting, None)
    assert reconstruct.optimizers.keys() == wys_splat.optimizers.keys() == {*nerfstudio_methods["splatfacto"].optimizers,
                                                                           "relevance"}
    for name, entry in nerfstudio_methods["splatfacto"].optimizers.items():  # splatfacto's own rates
        assert wys_splat.optimizers[name]["optimizer"].lr == entry["optimizer"].lr, name
    assert reconstruct.max_num_iterations == nerfstudio_methods["splatfacto"].max_num_iterations
    assert not reconstruct.pipeline.makes_edits and wys_splat.pipeline.makes_edits


def test_wys_and_wys_splat_continue_only_their_own_kind_of_run(tmp_path):
    """--load-dir reads the run's config.yml: wys takes nerfacto/wys runs, wys-splat splatfacto/wys-splat runs with
    the same SH degree; anything else is one line naming the method to train first."""
    import yaml

    from nerf_edit.errors import UsageError
    from nerf_edit_methods.configs import wys_reconstruct_method
    from nerf_edit_methods.splat.configs import wys_splat_method, wys_splat_reconstruct_method
    from nerf_edit_methods.validate import check_loadable_run

    runs = {}
    for name, spec in (("nerf", wys_reconstruct_method), ("splat", wys_splat_reconstruct_method)):
        (tmp_path / name / "nerfstudio_models").mkdir(parents=True)
        (tmp_path / name / "config.yml").write_text(yaml.dump(spec.config))
        runs[name] = tmp_path / name / "nerfstudio_models"
    splat_model, nerf_model = wys_splat_method.config.pipeline.model, wys_reconstruct_method.config.pipeline.model
    check_loadable_run(runs["splat"], splat_model)
    check_loadable_run(runs["nerf"], nerf_model)
    with pytest.raises(UsageError, match="continues splatfacto or wys-splat runs only.*wys-splat-reconstruct"):
        check_loadable_run(runs["nerf"], splat_model)
    with pytest.raises(UsageError, match="continues nerfacto or wys runs only"):
        check_loadable_run(runs["splat"], nerf_model)
    other_degree = type(splat_model)(sh_degree=1)
    with pytest.raises(UsageError, match="--pipeline.model.sh-degree 3, this run has 1"):
        check_loadable_run(runs["splat"], other_degree)


def test_the_igs2gs_preset_is_instruct_gs2gs_as_its_code_runs():
    """cvachha/instruct-gs2gs: igs2gs_pipeline.py ~45-59 (guidance 12.5 / 1.5, gs_steps 2500, 20 diffusion steps,
    bounds 0.70 / 0.98, fp16 IP2P), igs2gs_config.py ~45-83 (7500 iterations, camera 1e-3 -> 5e-5 accumulated over
    100 steps, splatfacto's other rates), no relevance, nothing frozen, no densification after the reconstruction."""
    from nerf_edit_methods.splat.configs import splatfacto_optimizers, wys_splat_igs2gs_method

    config = wys_splat_igs2gs_method.config
    pipeline, editing = config.pipeline, config.pipeline.editing
    assert (pipeline.edit_schedule, pipeline.sweep_every, pipeline.lower_bound, pipeline.upper_bound) == \
        ("sweep", 2500, 0.70, 0.98)
    assert (editing.guidance_scale, editing.image_guidance_scale, editing.steps, editing.dtype) == (12.5, 1.5, 20, "fp16")
    assert (pipeline.editor, pipeline.use_relevance, pipeline.freeze_irrelevant, pipeline.refine_in_edit) == \
        ("global", False, False, False)
    assert config.max_num_iterations == 7500 and config.gradient_accumulation_steps == {"camera_opt": 100}
    camera = config.optimizers["camera_opt"]
    assert (camera["optimizer"].lr, camera["scheduler"].lr_final, camera["scheduler"].max_steps) == (1e-3, 5e-5, 30000)
    assert camera["scheduler"].warmup_steps == 0
    others = splatfacto_optimizers()
    for name in ("means", "features_dc", "features_rest", "opacities", "scales", "quats"):
        assert config.optimizers[name]["optimizer"].lr == others[name]["optimizer"].lr, name
