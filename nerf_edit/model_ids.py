"""The names of the models nerf_edit loads (hub ids, the offline stand-in, the dtype names): plain strings, so
settings and their checks name models without importing diffusers or transformers. A leaf: imports nothing."""

IP2P_MODEL_ID = "timbrooks/instruct-pix2pix"
MAGICBRUSH_MODEL_ID = "vinesmsuic/magicbrush-jul7"
SAM_MODEL_ID = "facebook/sam-vit-huge"
TINY_MODEL = "tiny"  # random weights built in code (offline tests); `tiny:<seed>` for a second one
MODEL_INDEX = "model_index.json"  # the file every diffusers pipeline folder has
DTYPES = ("fp32", "float32", "fp16", "float16", "bf16", "bfloat16")  # names of `--dtype` besides auto
