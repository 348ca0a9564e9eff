"""ComfyUI's ``comfy.k_diffusion``: only ``utils.FolderOfImages`` (no samplers)."""
