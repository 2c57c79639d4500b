import subprocess
import sys
from pathlib import Path
from importlib.metadata import entry_points

from nerfstudio.plugins.types import MethodSpecification

METHODS = {"wys", "wys-small", "wys-tiny", "wys-global", "wys-reconstruct"}


def test_entry_points_register_our_methods_under_their_names():
    found = {ep.name: ep for ep in entry_points(group="nerfstudio.method_configs") if ep.value.startswith("nerf_edit_methods.")}
    assert set(found) == METHODS
    for name, ep in found.items():
        spec = ep.load()
        assert isinstance(spec, MethodSpecification)
        assert spec.config.method_name == name  # ns-train names a method by config.method_name
        assert not name.startswith("in2n")


def test_presets_differ_as_documented():
    from nerf_edit_methods.configs import wys_global_method, wys_method, wys_small_method, wys_tiny_method

    assert wys_method.config.pipeline.editor_dtype == "fp32"
    assert wys_small_method.config.pipeline.editor_dtype == "fp16"
    assert wys_tiny_method.config.pipeline.datamanager.train_num_rays_per_batch < wys_method.config.pipeline.datamanager.train_num_rays_per_batch
    assert wys_global_method.config.pipeline.editor == "global" and not wys_global_method.config.pipeline.use_relevance
    assert wys_method.config.max_num_iterations == 4000 and wys_method.config.pipeline.edit_rate == 10


def test_reconstruct_preset_is_wys_without_an_editor():
    """wys-reconstruct's checkpoint must load into wys: the same model and datamanager, only no editor."""
    from nerf_edit_methods.configs import wys_method, wys_reconstruct_method
    from nerf_edit_methods.reconstruct import WYSReconstructPipeline

    reconstruct = wys_reconstruct_method.config
    assert reconstruct.pipeline.model == wys_method.config.pipeline.model
    assert reconstruct.pipeline.datamanager == wys_method.config.pipeline.datamanager
    assert reconstruct.optimizers.keys() == wys_method.config.optimizers.keys()
    assert reconstruct.max_num_iterations == 30000  # nerfacto's
    assert WYSReconstructPipeline._make_editor(object()) is None  # no prompt needed, no weights loaded


def test_no_generic_top_level_module_is_installed():
    import nerf_edit_methods

    top_levels = {ep.value.split(":")[0].split(".")[0] for ep in entry_points(group="console_scripts") if "nerf_edit" in ep.value}
    assert top_levels == {"nerf_edit_scripts"}
    assert nerf_edit_methods.__name__ == "nerf_edit_methods"
    result = subprocess.run([sys.executable, "-c", "import methods"], capture_output=True, text=True, cwd="/")
    assert result.returncode != 0


def test_ns_train_help_lists_our_methods_without_errors():
    result = subprocess.run([str(Path(sys.executable).parent / "ns-train"), "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0
    for name in METHODS:
        assert name in result.stdout
    assert "Could not" not in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
