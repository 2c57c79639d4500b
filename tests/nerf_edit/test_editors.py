import pytest
import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.editing.editor import Editor, EditRequest, EditResult, editor_class, make_editor
from nerf_edit.editing.global_editor import GlobalEditor
from nerf_edit.editing.ip2p_editor import IP2PEditor
from nerf_edit.errors import EditorError
from nerf_edit.models.ip2p import pad_to_multiple
from nerf_edit.registry import EDITORS
from nerf_edit.wys.editor import RelevanceGuidedEditor


class HalfImageEditor(Editor):
    """A user editor, plugged in by import path: the left half is relevant; the edit inverts colours there."""

    def relevance(self, images, instruction, conditioning=None, generator=None):
        relevance = torch.zeros(images.shape[0], *images.shape[-2:])
        relevance[..., : images.shape[-1] // 2] = 1.0
        return relevance

    def run(self, request: EditRequest) -> EditResult:
        images = request.images
        mask = self.relevance(images, request.instruction) > 0.5 if request.mask is None else request.mask
        return EditResult(images=torch.where(mask[:, None], 1 - images, images), mask=mask)


class DuckTypedEditor:
    """Has relevance() and edit() but is no Editor: it would miss the request checks and the background guarantee."""

    def __init__(self, config):
        self.config = config

    def relevance(self, images, instruction, conditioning=None):
        return torch.ones(images.shape[0], *images.shape[-2:])

    def edit(self, images, instruction, conditioning=None, mask=None, strength=1.0, generator=None):
        return EditResult(images=images)


def test_registered_names():
    assert editor_class("relevance") is RelevanceGuidedEditor
    assert editor_class("wys") is RelevanceGuidedEditor
    assert editor_class("global") is GlobalEditor


def test_import_path_plugs_in_a_user_editor():
    editor = make_editor(f"{__name__}:HalfImageEditor", EditorConfig(model="tiny"))
    images = torch.rand(1, 3, 8, 8)
    out = editor.edit(images, "invert the left").images
    assert torch.equal(out[..., :4], 1 - images[..., :4]) and torch.equal(out[..., 4:], images[..., 4:])


@pytest.mark.parametrize(
    "spec, message",
    [
        ("nonsense", "unknown editor 'nonsense'"),
        ("no_such_module:Editor", "cannot import editor"),
        ("nerf_edit.editing.editor:NoSuchClass", "cannot import editor"),
        ("nerf_edit.config.editor:EditorConfig", "lacks relevance()/edit()"),
        (f"{__name__}:DuckTypedEditor", "lacks relevance()/edit()"),  # the methods alone are not the interface
    ],
)
def test_bad_editor_specs_say_what_is_wrong(spec, message):
    with pytest.raises(EditorError, match=message.replace("(", r"\(").replace(")", r"\)")):
        editor_class(spec)


def test_bad_inputs_are_named(tiny_ip2p):
    editor = RelevanceGuidedEditor(EditorConfig(model="tiny", steps=1), ip2p=tiny_ip2p)
    with pytest.raises(EditorError, match="instruction is empty"):
        editor.edit(torch.rand(1, 3, 16, 16), "   ")
    with pytest.raises(EditorError, match=r"\[B, 3, H, W\]"):
        editor.edit(torch.rand(3, 16, 16), "make it red")
    with pytest.raises(EditorError, match="at least 8x8"):
        editor.relevance(torch.rand(1, 3, 4, 16), "make it red")
    with pytest.raises(EditorError, match="mask must be"):
        editor.edit(torch.rand(1, 3, 16, 16), "make it red", mask=torch.ones(1, 8, 8, dtype=torch.bool))


def test_pad_to_multiple_keeps_the_image_in_the_top_left():
    image = torch.rand(1, 3, 13, 17)
    padded = pad_to_multiple(image, 8)
    assert padded.shape == (1, 3, 16, 24)
    assert torch.equal(padded[..., :13, :17], image)
    assert pad_to_multiple(padded, 8) is padded


def test_text_embeddings_are_cached(tiny_ip2p):
    first = tiny_ip2p.embed_text("make the cube red")
    assert tiny_ip2p.embed_text("make the cube red") is first
    assert not torch.equal(tiny_ip2p.embed_text("make the cube blue"), first)


def test_speed_options_keep_the_edit():
    """channels_last and VAE tiling/slicing change memory layout and chunking, not the result (to float tolerance;
    a view smaller than the VAE's tile is not tiled): neither the relevance nor the edit in a given mask. (The
    mask itself is relevance >= τ: a float difference flips the pixels that sit on τ, so it is compared as the
    relevance it comes from.)"""
    import torch

    from nerf_edit.config.editor import EditorConfig
    from nerf_edit.wys.editor import RelevanceGuidedEditor

    images = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(0))

    def edit(mask=None, **options):
        editor = RelevanceGuidedEditor(EditorConfig(model="tiny", device="cpu", steps=3, **options))
        return editor.edit(images, "turn the ball blue", mask=mask, generator=torch.Generator().manual_seed(0))

    plain = edit()
    in_mask = edit(mask=plain.mask).images
    for options in ({"channels_last": True}, {"vae_tiling": True}):
        torch.testing.assert_close(edit(**options).relevance, plain.relevance, rtol=0, atol=1e-4)
        torch.testing.assert_close(edit(mask=plain.mask, **options).images, in_mask, rtol=0, atol=1e-4)


@pytest.mark.gpu
def test_compiled_unet_keeps_the_edit():
    import torch

    from nerf_edit.config.editor import EditorConfig
    from nerf_edit.wys.editor import RelevanceGuidedEditor

    images = torch.rand(1, 3, 64, 64, device="cuda")

    def edit(**options):
        editor = RelevanceGuidedEditor(EditorConfig(model="tiny", device="cuda", dtype="fp32", steps=3, **options))
        return editor.edit(images, "turn the ball blue", generator=torch.Generator("cuda").manual_seed(0)).images

    torch.testing.assert_close(edit(compile=True, channels_last=True), edit(), rtol=0, atol=1e-3)


@pytest.mark.parametrize("name", sorted(EDITORS))
def test_every_registered_editor_implements_the_one_request(name, tiny_ip2p):
    """Each registered editor is built (tiny models) and edits through the one EditRequest: the same keywords,
    a caller's mask and background honoured bit for bit outside the mask, one EditorError line for a bad input."""
    from nerf_edit.config.vimaedit import ViMAEditConfig
    from nerf_edit.config.zone import ZoneConfig

    config = EditorConfig(model="tiny", steps=2, zone=ZoneConfig(fusion_model="none", segmenter="none"),
                          vimaedit=ViMAEditConfig(model="tiny", ip_adapter="tiny", clip_model="tiny", steps=2,
                                                  source_prompt="a red ball"))
    cls = editor_class(name)
    editor = cls(config, ip2p=tiny_ip2p) if issubclass(cls, IP2PEditor) else cls(config)
    assert isinstance(editor, Editor)
    generator = torch.Generator().manual_seed(0)
    images, background = torch.rand(1, 3, 32, 32, generator=generator), torch.rand(1, 3, 32, 32, generator=generator)
    mask = torch.zeros(1, 32, 32, dtype=torch.bool)
    mask[:, 8:20, 8:24] = True
    instruction = "turn the red ball blue"
    result = editor.edit(images, instruction, conditioning=images, mask=mask, strength=0.8,
                         generator=torch.Generator().manual_seed(1), on_step=lambda *step: None, background=background)
    assert result.images.shape == images.shape
    kept = ~result.mask[:, None].expand_as(images)
    assert torch.equal(result.images[kept], background[kept])
    with pytest.raises(EditorError, match="mask must be"):
        editor.edit(images, instruction, mask=torch.ones(1, 8, 8, dtype=torch.bool))


def test_the_editing_layer_loads_no_system():
    """GlobalEditor and the IP2P editor base name no localiser of a system: built (tiny model) and used, they
    import none of nerf_edit.wys / zone / vimaedit (run in a fresh interpreter, where nothing else loaded them)."""
    import subprocess
    import sys

    code = (
        "import sys, torch\n"
        "from nerf_edit.config.editor import EditorConfig\n"
        "from nerf_edit.editing.global_editor import GlobalEditor\n"
        "from nerf_edit.editing.ip2p_editor import IP2PEditor\n"
        "editor = GlobalEditor(EditorConfig(model='tiny', steps=1))\n"
        "editor.edit(torch.rand(1, 3, 16, 16), 'make it red')\n"
        "editor.relevance(torch.rand(1, 3, 16, 16), 'make it red')\n"
        "assert IP2PEditor.localizer_type(EditorConfig()) is None\n"
        "print(sorted(m for m in sys.modules if m.split('.')[:2] in "
        "(['nerf_edit', 'wys'], ['nerf_edit', 'zone'], ['nerf_edit', 'vimaedit'])))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1] == "[]"
