"""Running an upscaling network over frames too large for it, tile by tile, with hidden seams.

Neighbouring tiles overlap by at least ``overlap`` pixels. Their outputs are blended with
linear weights that ramp over the middle half of each overlap only: the outer quarter on each
side, where a tile's output is spoilt by the padding at its edge, gets no weight. So the tiled
result equals the untiled one (up to float rounding) whenever the network's receptive field
reaches no further than ``overlap / 4`` input pixels; past that, the ramp still hides the seam.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

Network = Callable[[torch.Tensor], torch.Tensor]


def pad_to_multiple(images: torch.Tensor, multiple: int) -> torch.Tensor:
    """``[n,C,H,W]`` with H and W padded up to multiples of ``multiple`` (edge replicated)."""
    height, width = images.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        images = F.pad(images, (0, pad_w, 0, pad_h), mode="replicate")
    return images


def run_padded(network: Network, images: torch.Tensor, scale: int,
               size_multiple: int = 1) -> torch.Tensor:
    """``network`` on ``[n,C,H,W]`` padded to ``size_multiple``, the padding's share of the
    ``scale`` times larger output cropped off."""
    height, width = images.shape[-2:]
    return network(pad_to_multiple(images, size_multiple))[..., :height * scale, :width * scale]


def tile_spans(length: int, tile: int, overlap: int, multiple: int = 1,
               ) -> list[tuple[int, int]]:
    """``(start, stop)`` of the fewest tiles of ``tile`` pixels that cover ``length`` with
    neighbours overlapping by at least ``overlap``, spread evenly from edge to edge.

    Starts are multiples of ``multiple`` (as ``tile`` and ``length`` must be then), so a
    network that pixel-unshuffles its input sees the same pixel grid in every tile.
    """
    if length <= tile:
        return [(0, length)]
    longest_step = max(multiple, (tile - overlap) // multiple * multiple)
    count = math.ceil((length - tile) / longest_step) + 1
    step = (length - tile) / (count - 1)
    starts = [round(i * step / multiple) * multiple for i in range(count)]
    return [(start, start + tile) for start in starts]


def blend_weights(spans: list[tuple[int, int]], scale: int, device: torch.device,
                  ) -> list[torch.Tensor]:
    """For each tile, its 1-D weight over its output pixels: 1 inside, 0 in the outer quarter
    of each overlap with a neighbour, a linear ramp between; normalised so that the weights of
    all tiles add up to 1 at every pixel."""
    weights = []
    total = torch.zeros(spans[-1][1] * scale, device=device)
    for i, (start, stop) in enumerate(spans):
        coords = torch.arange(start * scale, stop * scale, device=device,
                              dtype=torch.float32) + 0.5
        weight = torch.ones_like(coords)
        if i > 0:  # ramp up across the overlap with the previous tile
            weight = weight * _ramp(coords, start, spans[i - 1][1], scale)
        if i < len(spans) - 1:  # and down across the overlap with the next
            weight = weight * (1 - _ramp(coords, spans[i + 1][0], stop, scale))
        total[start * scale:stop * scale] += weight
        weights.append(weight)
    return [w / total[a * scale:b * scale] for w, (a, b) in zip(weights, spans, strict=True)]


def _ramp(coords: torch.Tensor, overlap_start: int, overlap_stop: int,
          scale: int) -> torch.Tensor:
    quarter = (overlap_stop - overlap_start) / 4
    low, high = (overlap_start + quarter) * scale, (overlap_stop - quarter) * scale
    return ((coords - low) / (high - low)).clamp(0, 1)


def upscale_tiled(network: Network, images: torch.Tensor, scale: int, tile_size: int,
                  overlap: int, size_multiple: int = 1) -> torch.Tensor:
    """``network`` (which enlarges by the integer ``scale``) over ``[n,C,H,W]`` images in tiles
    of ``tile_size`` pixels overlapping by ``overlap``; ``tile_size`` 0 runs whole images.

    The output is float32 ``[n,C,H*scale,W*scale]`` on the images' device.
    """
    height, width = images.shape[-2:]
    if tile_size <= 0 or (height <= tile_size and width <= tile_size):
        return run_padded(network, images, scale, size_multiple).float()
    if not 0 <= overlap < tile_size:
        raise ValueError(f"tile_overlap ({overlap}) must be at least 0 and smaller than "
                         f"tile_size ({tile_size})")
    images = pad_to_multiple(images, size_multiple)
    tile = max(size_multiple, tile_size // size_multiple * size_multiple)
    rows = tile_spans(images.shape[-2], tile, overlap, size_multiple)
    cols = tile_spans(images.shape[-1], tile, overlap, size_multiple)
    row_weights = blend_weights(rows, scale, images.device)
    col_weights = blend_weights(cols, scale, images.device)
    out = torch.zeros((*images.shape[:-2], images.shape[-2] * scale, images.shape[-1] * scale),
                      dtype=torch.float32, device=images.device)
    for (top, bottom), row_weight in zip(rows, row_weights, strict=True):
        for (left, right), col_weight in zip(cols, col_weights, strict=True):
            tile_out = network(images[..., top:bottom, left:right])
            weight = row_weight[:, None] * col_weight[None, :]
            out[..., top * scale:bottom * scale, left * scale:right * scale] += tile_out * weight
    return out[..., :height * scale, :width * scale]
