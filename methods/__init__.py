"""nerfstudio plugin of nerf_edit (installed as `nerf_edit_methods`)."""
