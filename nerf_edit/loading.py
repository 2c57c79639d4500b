"""Loading InstructPix2Pix-architecture pipelines: a hub id, a local directory, or the tiny offline model."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import StableDiffusionInstructPix2PixPipeline
from diffusers.pipelines import pipeline_utils as diffusers_pipeline_utils
from diffusers.utils import logging as diffusers_logging

# diffusers >= 0.36 renamed from_pretrained's `torch_dtype` to `dtype` (the old name warns).
_DTYPE_KWARG = "dtype" if hasattr(diffusers_pipeline_utils, "_resolve_dtype") else "torch_dtype"
IP2P_MODEL_ID = "timbrooks/instruct-pix2pix"
TINY_MODEL = "tiny"
MAGICBRUSH_MODEL_ID = "vinesmsuic/magicbrush-jul7"


def is_tiny(model: str) -> bool:
    """`tiny`, or `tiny:<seed>` for a second, differently initialised tiny model (e.g. a stand-in MagicBrush)."""
    return model == TINY_MODEL or (model.startswith(TINY_MODEL + ":") and model[len(TINY_MODEL) + 1 :].isdigit())


class ModelUnavailableError(RuntimeError):
    """A model could not be loaded; the message is one line saying why and how to fix it."""


def resolve_dtype(device: str | torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """fp32 on CPU (half precision convs are slow or missing there); fp16 on GPU unless told otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
             "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
    if dtype not in names:
        raise ValueError(f"unknown dtype {dtype!r}: use one of {sorted(names)} or 'auto'")
    return names[dtype]


def unavailable_message(model: str, error: BaseException) -> str:
    offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")
    cache = os.environ.get("HF_HOME", "~/.cache/huggingface")
    return (
        f"model {model!r} is not available ({type(error).__name__}; HF_HOME={cache}, "
        f"HF_HUB_OFFLINE={'1' if offline else '0'}): pre-download it on a networked machine with "
        f"`huggingface-cli download {model}` and copy HF_HOME here, pass a local directory, "
        f"or use `{TINY_MODEL}` for the random-weight test model"
    )


def load_ip2p_pipeline(
    model: str = IP2P_MODEL_ID,
    device: str | torch.device = "cpu",
    dtype: str | torch.dtype | None = None,
) -> StableDiffusionInstructPix2PixPipeline:
    """Load an IP2P-architecture pipeline (IP2P, MagicBrush, ...) by hub id or local path, or `tiny[:seed]`.

    Raises ModelUnavailableError (one line) when the weights cannot be had, e.g. offline with an empty cache.
    """
    torch_dtype = resolve_dtype(device, dtype)
    if is_tiny(model):
        from nerf_edit.tiny import build_tiny_ip2p_pipeline

        pipe = build_tiny_ip2p_pipeline(seed=int(model.partition(":")[2] or 0))
    else:
        if not model or (model.startswith((".", "/", "~")) and not Path(model).expanduser().is_dir()):
            raise ModelUnavailableError(f"model path {model!r} is not a directory: pass a saved pipeline folder, "
                                        f"a hub id such as {IP2P_MODEL_ID!r}, or {TINY_MODEL!r}")
        verbosity = diffusers_logging.get_verbosity()
        diffusers_logging.set_verbosity_error()  # our one-line error replaces diffusers' connection chatter
        try:
            pipe = StableDiffusionInstructPix2PixPipeline.from_pretrained(
                str(Path(model).expanduser()) if Path(model).expanduser().is_dir() else model,
                **{_DTYPE_KWARG: torch_dtype},
                safety_checker=None,
                requires_safety_checker=False,
            )
        except (OSError, ValueError, EnvironmentError) as error:
            raise ModelUnavailableError(unavailable_message(model, error)) from error
        finally:
            diffusers_logging.set_verbosity(verbosity)
    pipe.set_progress_bar_config(disable=True)
    if pipe.unet.dtype != torch_dtype:
        pipe = pipe.to(dtype=torch_dtype)
    return pipe.to(device)
