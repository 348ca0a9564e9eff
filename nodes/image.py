"""Image nodes: make, invert, scale, filter, blend and batch ``IMAGE`` tensors ``[B,H,W,C]``.

Class names, inputs, defaults and choices are ComfyUI's, so workflows that use them run as is.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from nodes.imaging import (
    CROP_METHODS,
    MAX_RESOLUTION,
    UPSCALE_METHODS,
    report_progress,
    resample,
    resize_like,
)

CHUNK_FRAMES = 16  # frames filtered at once: bounds the padded copy, and a progress tick each


def _image_input(tooltip: str = "The images, a batch [B,H,W,C] in 0..1.") -> tuple:
    return ("IMAGE", {"tooltip": tooltip})


def _combo(choices: tuple[str, ...], tooltip: str) -> tuple:
    return (list(choices), {"default": choices[0], "tooltip": tooltip})


def _by_chunks(images: torch.Tensor, fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """Apply ``fn`` to runs of frames, reporting progress after each run."""
    total = images.shape[0]
    parts = []
    for start in range(0, total, CHUNK_FRAMES):
        parts.append(fn(images[start:start + CHUNK_FRAMES]))
        report_progress(min(start + CHUNK_FRAMES, total), total)
    return torch.cat(parts) if parts else images


def _resized(images: torch.Tensor, width: int, height: int, method: str,
             crop: str) -> torch.Tensor:
    return _by_chunks(images, lambda part: resample(part.movedim(-1, 1), width, height, method,
                                                    crop).movedim(1, -1))


def gaussian_blur(images: torch.Tensor, radius: int, sigma: float) -> torch.Tensor:
    """Blur ``[B,H,W,C]`` with ComfyUI's kernel: a (2r+1)² Gaussian over coordinates in -1..1.

    That kernel is separable, so it runs as two 1-D passes; edges are reflected.
    """
    if radius <= 0:
        return images
    x = images.movedim(-1, 1).float()
    channels = x.shape[1]
    coords = torch.linspace(-1.0, 1.0, 2 * radius + 1, device=x.device)
    weights = torch.exp(-(coords * coords) / (2.0 * sigma * sigma))
    weights = weights / weights.sum()
    mode = "reflect" if radius < min(x.shape[2], x.shape[3]) else "replicate"
    x = F.pad(x, (radius, radius, radius, radius), mode=mode)
    x = F.conv2d(x, weights.view(1, 1, 1, -1).repeat(channels, 1, 1, 1), groups=channels)
    x = F.conv2d(x, weights.view(1, 1, -1, 1).repeat(channels, 1, 1, 1), groups=channels)
    return x.movedim(1, -1).to(images.dtype)


class EmptyImage:
    """A batch of images filled with one colour."""

    DESCRIPTION = "Creates a batch of solid-colour images of the given size."
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "width": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1,
                              "tooltip": "Width of the images in pixels."}),
            "height": ("INT", {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1,
                               "tooltip": "Height of the images in pixels."}),
            "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096,
                                   "tooltip": "How many images (frames) to make."}),
            "color": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1,
                              "display": "color", "tooltip": "Fill colour as 0xRRGGBB."}),
        }}

    def generate(self, width: int, height: int, batch_size: int = 1,
                 color: int = 0) -> tuple[torch.Tensor]:
        rgb = torch.tensor([(color >> 16) & 0xFF, (color >> 8) & 0xFF, color & 0xFF],
                           dtype=torch.float32) / 255.0
        return (rgb.expand(batch_size, height, width, 3).clone(),)


class ImageInvert:
    """Inverts every channel: ``1 - image``."""

    DESCRIPTION = "Inverts the colours of the images (1 - value)."
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image": _image_input("The images to invert.")}}

    def invert(self, image: torch.Tensor) -> tuple[torch.Tensor]:
        return (1.0 - image,)


class ImageScale:
    """Resizes images to a width and height; a 0 side keeps the aspect ratio."""

    DESCRIPTION = ("Resizes the images to width x height. Set one side to 0 to keep the aspect "
                   "ratio; 'center' crop trims the sides instead of stretching.")
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    upscale_methods = list(UPSCALE_METHODS)
    crop_methods = list(CROP_METHODS)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": _image_input("The images to resize."),
            "upscale_method": _combo(UPSCALE_METHODS, "The resampling filter."),
            "width": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1,
                              "tooltip": "Target width; 0 follows the height's scale."}),
            "height": ("INT", {"default": 512, "min": 0, "max": MAX_RESOLUTION, "step": 1,
                               "tooltip": "Target height; 0 follows the width's scale."}),
            "crop": _combo(CROP_METHODS, "'center' crops to the target aspect ratio first."),
        }}

    def upscale(self, image: torch.Tensor, upscale_method: str, width: int, height: int,
                crop: str) -> tuple[torch.Tensor]:
        if width == 0 and height == 0:
            return (image,)
        in_h, in_w = image.shape[1], image.shape[2]
        if width == 0:
            width = max(1, round(in_w * height / in_h))
        elif height == 0:
            height = max(1, round(in_h * width / in_w))
        return (_resized(image, width, height, upscale_method, crop),)


class ImageScaleBy:
    """Resizes images by a factor."""

    DESCRIPTION = "Resizes the images by a factor (0.5 halves, 2 doubles each side)."
    CATEGORY = "image/upscaling"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "upscale"
    upscale_methods = list(UPSCALE_METHODS)

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": _image_input("The images to resize."),
            "upscale_method": _combo(UPSCALE_METHODS, "The resampling filter."),
            "scale_by": ("FLOAT", {"default": 1.0, "min": 0.01, "max": 8.0, "step": 0.01,
                                   "tooltip": "Factor applied to width and height."}),
        }}

    def upscale(self, image: torch.Tensor, upscale_method: str,
                scale_by: float) -> tuple[torch.Tensor]:
        width = max(1, round(image.shape[2] * scale_by))
        height = max(1, round(image.shape[1] * scale_by))
        return (_resized(image, width, height, upscale_method, "disabled"),)


class ImageBlur:
    """Gaussian blur."""

    DESCRIPTION = "Blurs the images with a Gaussian kernel of the given radius and sigma."
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blur"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": _image_input("The images to blur."),
            "blur_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1,
                                    "tooltip": "Kernel radius in pixels."}),
            "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.1,
                                "tooltip": "Spread of the Gaussian (larger is flatter)."}),
        }}

    def blur(self, image: torch.Tensor, blur_radius: int, sigma: float) -> tuple[torch.Tensor]:
        return (_by_chunks(image, lambda x: gaussian_blur(x, blur_radius, sigma)),)


class ImageSharpen:
    """Unsharp mask: adds back the difference between the image and its blur."""

    DESCRIPTION = "Sharpens the images: image + 10*alpha*(image - blur(image)), clipped to 0..1."
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sharpen"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": _image_input("The images to sharpen."),
            "sharpen_radius": ("INT", {"default": 1, "min": 1, "max": 31, "step": 1,
                                       "tooltip": "Radius of the blur that is subtracted."}),
            "sigma": ("FLOAT", {"default": 1.0, "min": 0.1, "max": 10.0, "step": 0.01,
                                "tooltip": "Spread of that blur."}),
            "alpha": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 5.0, "step": 0.01,
                                "tooltip": "Strength; 0 leaves the images unchanged."}),
        }}

    def sharpen(self, image: torch.Tensor, sharpen_radius: int, sigma: float,
                alpha: float) -> tuple[torch.Tensor]:
        def one(x: torch.Tensor) -> torch.Tensor:
            detail = x - gaussian_blur(x, sharpen_radius, sigma)
            return torch.clamp(x + 10.0 * alpha * detail, 0.0, 1.0)

        return (_by_chunks(image, one),)


def _soft_light_curve(x: torch.Tensor) -> torch.Tensor:
    return torch.where(x <= 0.25, ((16 * x - 12) * x + 4) * x, torch.sqrt(x))


BLEND_MODES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "normal": lambda a, b: b,
    "multiply": lambda a, b: a * b,
    "screen": lambda a, b: 1 - (1 - a) * (1 - b),
    "overlay": lambda a, b: torch.where(a <= 0.5, 2 * a * b, 1 - 2 * (1 - a) * (1 - b)),
    "soft_light": lambda a, b: torch.where(
        b <= 0.5, a - (1 - 2 * b) * a * (1 - a), a + (2 * b - 1) * (_soft_light_curve(a) - a)),
    # As ComfyUI: a signed difference, so where image2 is brighter the result clips to 0.
    "difference": lambda a, b: a - b,
}


class ImageBlend:
    """Blends image2 over image1 with a blend mode, mixed in by blend_factor."""

    DESCRIPTION = ("Blends image2 onto image1 (normal, multiply, screen, overlay, soft light, "
                   "difference); image2 is resized to image1 when their sizes differ.")
    CATEGORY = "image/postprocessing"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "blend_images"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image1": _image_input("The base images."),
            "image2": _image_input("The images blended on top (resized to image1)."),
            "blend_factor": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.01,
                                       "tooltip": "0 keeps image1, 1 is the full blend."}),
            "blend_mode": _combo(tuple(BLEND_MODES), "How the two images combine."),
        }}

    def blend_images(self, image1: torch.Tensor, image2: torch.Tensor, blend_factor: float,
                     blend_mode: str) -> tuple[torch.Tensor]:
        if blend_mode not in BLEND_MODES:
            raise ValueError(f"unknown blend_mode {blend_mode!r}; use one of {list(BLEND_MODES)}")
        image2 = resize_like(image2.to(image1.device), image1, "bicubic")
        blended = BLEND_MODES[blend_mode](image1, image2)
        mixed = image1 * (1 - blend_factor) + blended * blend_factor
        return (torch.clamp(mixed, 0.0, 1.0),)


class ImageBatch:
    """Joins two batches; image2 is resized to image1's size when they differ."""

    DESCRIPTION = "Appends image2's frames after image1's (image2 resized to image1 if needed)."
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "batch"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {"image1": _image_input("The first frames."),
                             "image2": _image_input("The frames appended after them.")}}

    def batch(self, image1: torch.Tensor, image2: torch.Tensor) -> tuple[torch.Tensor]:
        image2 = resize_like(image2.to(image1.device), image1, "bilinear")
        return (torch.cat((image1, image2), dim=0),)


class ImageFromBatch:
    """Picks a run of frames out of a batch."""

    DESCRIPTION = ("Returns `length` frames starting at `batch_index` (both clamped to the "
                   "batch).")
    CATEGORY = "image/batch"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "frombatch"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": _image_input("The batch to pick from."),
            "batch_index": ("INT", {"default": 0, "min": 0, "max": 4095,
                                    "tooltip": "Index of the first frame (0-based)."}),
            "length": ("INT", {"default": 1, "min": 1, "max": 4096,
                               "tooltip": "How many frames to take."}),
        }}

    def frombatch(self, image: torch.Tensor, batch_index: int,
                  length: int) -> tuple[torch.Tensor]:
        start = min(image.shape[0] - 1, batch_index)
        length = min(image.shape[0] - start, length)
        return (image[start:start + length].clone(),)


class RepeatImageBatch:
    """Repeats a batch a number of times."""

    DESCRIPTION = "Repeats the whole batch `amount` times."
    CATEGORY = "image/batch"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "repeat"

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {"required": {
            "image": _image_input("The batch to repeat."),
            "amount": ("INT", {"default": 1, "min": 1, "max": 4096,
                               "tooltip": "How many copies of the batch."}),
        }}

    def repeat(self, image: torch.Tensor, amount: int) -> tuple[torch.Tensor]:
        return (image.repeat((amount, 1, 1, 1)),)


NODE_CLASS_MAPPINGS = {
    "EmptyImage": EmptyImage,
    "ImageInvert": ImageInvert,
    "ImageScale": ImageScale,
    "ImageScaleBy": ImageScaleBy,
    "ImageBlur": ImageBlur,
    "ImageSharpen": ImageSharpen,
    "ImageBlend": ImageBlend,
    "ImageBatch": ImageBatch,
    "ImageFromBatch": ImageFromBatch,
    "RepeatImageBatch": RepeatImageBatch,
}

NODE_DISPLAY_NAME_MAPPINGS = {
    "EmptyImage": "EmptyImage",
    "ImageInvert": "Invert Image",
    "ImageScale": "Upscale Image",
    "ImageScaleBy": "Upscale Image By",
    "ImageBlur": "Image Blur",
    "ImageSharpen": "Image Sharpen",
    "ImageBlend": "Image Blend",
    "ImageBatch": "Batch Images",
    "ImageFromBatch": "Image From Batch",
    "RepeatImageBatch": "Repeat Image Batch",
}
