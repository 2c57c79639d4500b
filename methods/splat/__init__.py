"""Gaussian splatting: a device-agnostic renderer (gsplat on CUDA, pure torch elsewhere)."""
