"""Loading InstructPix2Pix-architecture pipelines: a hub id, a local directory, or the tiny offline model."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from diffusers import StableDiffusionInstructPix2PixPipeline
from diffusers.pipelines import pipeline_utils as diffusers_pipeline_utils
from diffusers.utils import logging as diffusers_logging

from nerf_edit.errors import ModelUnavailableError, UsageError
from nerf_edit.model_ids import IP2P_MODEL_ID, MAGICBRUSH_MODEL_ID, MODEL_INDEX, TINY_MODEL

__all__ = ["DTYPE_NAMES", "IP2P_MODEL_ID", "MAGICBRUSH_MODEL_ID", "MODEL_INDEX", "TINY_MODEL", "check_available",
           "check_model", "hub_offline", "is_tiny", "load_ip2p_pipeline", "resolve_dtype", "unavailable_message"]

# diffusers >= 0.36 renamed from_pretrained's `torch_dtype` to `dtype` (the old name warns).
_DTYPE_KWARG = "dtype" if hasattr(diffusers_pipeline_utils, "_resolve_dtype") else "torch_dtype"
DTYPE_NAMES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
               "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def is_tiny(model: str) -> bool:
    """`tiny`, or `tiny:<seed>` for a second, differently initialised tiny model (e.g. a stand-in MagicBrush)."""
    return model == TINY_MODEL or (model.startswith(TINY_MODEL + ":") and model[len(TINY_MODEL) + 1 :].isdigit())


def resolve_dtype(device: str | torch.device, dtype: str | torch.dtype | None = None) -> torch.dtype:
    """fp32 on CPU (half precision convs are slow or missing there); fp16 on GPU unless told otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype in (None, "auto"):
        return torch.float16 if torch.device(device).type == "cuda" else torch.float32
    if dtype not in DTYPE_NAMES:
        raise UsageError(f"unknown dtype {dtype!r}: use one of {sorted(DTYPE_NAMES)} or 'auto'")
    return DTYPE_NAMES[dtype]


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False")


def check_available(model: str, key_file: str = MODEL_INDEX, name: str = "model") -> None:
    """Raise ModelUnavailableError (one line) unless `model` can be loaded, without loading any weights: a local
    folder must hold `key_file`; a hub id must be in the Hugging Face cache, or (online) exist on the hub."""
    if not model:
        raise ModelUnavailableError(f"{name} is empty: pass a hub id such as {IP2P_MODEL_ID!r}, a local folder, "
                                    f"or {TINY_MODEL!r}")
    path = Path(model).expanduser()
    if model.startswith((".", "/", "~")) or path.is_dir():
        if not path.is_dir():
            raise ModelUnavailableError(f"{name} {model!r} is not a directory: pass a saved model folder, a hub id "
                                        f"such as {IP2P_MODEL_ID!r}, or {TINY_MODEL!r}")
        if not (path / key_file).is_file():
            raise ModelUnavailableError(f"{name} {model!r} has no {key_file}: pass the folder a model was saved to "
                                        f"(save_pretrained), a hub id, or {TINY_MODEL!r}")
        return
    from huggingface_hub import try_to_load_from_cache
    from huggingface_hub.errors import HFValidationError, RepositoryNotFoundError

    try:
        cached = try_to_load_from_cache(model, key_file)
    except HFValidationError as error:
        raise ModelUnavailableError(f"{name} {model!r} is neither a folder nor a hub id ('org/name'): pass a "
                                    f"saved model folder, a hub id, or {TINY_MODEL!r}") from error
    if isinstance(cached, str):
        return
    if hub_offline():
        raise ModelUnavailableError(unavailable_message(model, FileNotFoundError(key_file)))
    from huggingface_hub import HfApi

    try:  # one small metadata request; the weights are downloaded by the loader
        HfApi().model_info(model, timeout=10)
    except RepositoryNotFoundError as error:
        raise ModelUnavailableError(f"{name} {model!r} is not on the hub (or is private): check the id, log in "
                                    f"with `huggingface-cli login`, or pass a local folder") from error
    except Exception as error:  # no connection: the loader could not download it either
        if "connect" in type(error).__name__.lower() or "timeout" in type(error).__name__.lower() or isinstance(error, OSError):
            raise ModelUnavailableError(unavailable_message(model, error)) from error
        # any other hub answer: leave it to the loader, which reports its own one-line error


def unavailable_message(model: str, error: BaseException) -> str:
    offline = hub_offline()
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
        from nerf_edit.models.tiny import build_tiny_ip2p_pipeline

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


def check_model(model: str, name: str, key_file: str, tiny_ok: bool = True) -> None:
    """A model that can be loaded, checked without loading weights: `tiny[:seed]`, a local folder holding
    `key_file`, or a hub id in the local cache (or, online, on the hub). See `check_available`."""
    if tiny_ok and is_tiny(model):
        return
    check_available(model, key_file, name)
