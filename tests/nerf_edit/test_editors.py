import pytest
import torch

from nerf_edit.config.editor import EditorConfig
from nerf_edit.editing.editor import make_editor, pad_to_multiple
from nerf_edit.editing.global_editor import GlobalEditor
from nerf_edit.errors import EditorError
from nerf_edit.registry import editor_class
from nerf_edit.wys.editor import RelevanceGuidedEditor


class HalfImageEditor:
    """A user editor, plugged in by import path: the left half is relevant; the edit inverts colours there."""

    def __init__(self, config):
        self.config = config

    def relevance(self, images, instruction, conditioning=None):
        relevance = torch.zeros(images.shape[0], *images.shape[-2:])
        relevance[..., : images.shape[-1] // 2] = 1.0
        return relevance

    def edit(self, images, instruction, conditioning=None, mask=None, strength=1.0, generator=None):
        from nerf_edit.editing.editor import EditResult

        mask = self.relevance(images, instruction) > 0.5 if mask is None else mask
        return EditResult(images=torch.where(mask[:, None], 1 - images, images), mask=mask)


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
    a view smaller than the VAE's tile is not tiled)."""
    import torch

    from nerf_edit.config.editor import EditorConfig
    from nerf_edit.wys.editor import RelevanceGuidedEditor

    images = torch.rand(2, 3, 40, 48, generator=torch.Generator().manual_seed(0))

    def edit(**options):
        editor = RelevanceGuidedEditor(EditorConfig(model="tiny", device="cpu", steps=3, **options))
        return editor.edit(images, "turn the ball blue", generator=torch.Generator().manual_seed(0)).images

    plain = edit()
    torch.testing.assert_close(edit(channels_last=True), plain, rtol=0, atol=1e-4)
    torch.testing.assert_close(edit(vae_tiling=True), plain, rtol=0, atol=1e-4)


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
