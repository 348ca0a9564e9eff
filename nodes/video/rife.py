"""RIFE 4.x frame interpolation: the IFNet of Practical-RIFE (4.5 to 4.26), built from the
shapes of the public weights (``flownet.pkl`` and its renamed copies, ``.pth`` or
``.safetensors``).

IFNet refines a pair of flows (to A and to B from the in-between frame) coarse to fine: block
``i`` looks at the frames at 1/2^(n-1-i) of their size, each later block at the frames warped
by the flows so far, and predicts a flow update and a blend mask. From 4.7 a small encoder adds
learnt features of both frames (warped along too), and from about 4.20 each block also hands
8 feature channels to the next. The output is the two warped frames mixed by the mask.

Everything that differs between the 4.x releases (block count and widths, encoder, feature
hand-over) is read off the tensors, so one module loads them all; RIFE 4.0-4.4 and 3.x used
other blocks and are refused with a message saying so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from nodes.diffusion.device import inference_device
from nodes.diffusion.model_files import ModelLoadError
from nodes.diffusion.weights import StateDict, read_state_dict

EXPECTED = "expected RIFE IFNet 4.x weights (keys block0.conv0.0.0.weight, block0.convblock...)"
# Each block reads its input at a quarter of its scale (two stride-2 convolutions).
BLOCK_DOWNSAMPLING = 4
# In-between frames computed at once: bounds memory for x8 on large frames.
TIMES_PER_BATCH = 4


@dataclass(frozen=True)
class IFNetConfig:
    """What varies between the RIFE 4.x releases."""

    block_inputs: tuple[int, ...]  # input channels of each block (before the flow is added)
    block_widths: tuple[int, ...]  # channels inside each block
    res_convs: int = 8  # residual convolutions per block
    block_outputs: int = 6  # flow (4), mask (1) and the rest: features for the next block
    encoder_widths: tuple[int, ...] = ()  # channels after each encoder layer; () is none
    encoder_activations: bool = True  # LeakyReLU between encoder layers (not in 4.7-4.9)
    hands_features: bool = False  # each block passes block_outputs - 5 channels on

    @property
    def feature_channels(self) -> int:
        return self.encoder_widths[-1] if self.encoder_widths else 0

    @property
    def accumulates_mask(self) -> bool:
        # Before the encoder arrived (4.7) each block added to the mask; since, it replaces it.
        return not self.encoder_widths


def _conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """A stride-2 3x3 convolution and LeakyReLU (the public layout nests it: ``N.0.weight``)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, 2, 1), nn.LeakyReLU(0.2, True))


class ResConv(nn.Module):
    """``lrelu(conv(x) * beta + x)``: a residual 3x3 convolution with a learnt per-channel gain."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        self.beta = nn.Parameter(torch.ones(1, channels, 1, 1))
        self.relu = nn.LeakyReLU(0.2, True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.conv(x) * self.beta + x)


class IFBlock(nn.Module):
    """One refinement level: reads its input at 1/scale, predicts flows, mask and features."""

    def __init__(self, in_channels: int, width: int, res_convs: int, out_channels: int):
        super().__init__()
        self.conv0 = nn.Sequential(_conv(in_channels, width // 2), _conv(width // 2, width))
        self.convblock = nn.Sequential(*(ResConv(width) for _ in range(res_convs)))
        # Back up 4x: a transposed convolution (2x) then a pixel shuffle (2x).
        self.lastconv = nn.Sequential(nn.ConvTranspose2d(width, 4 * out_channels, 4, 2, 1),
                                      nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor, flow: torch.Tensor | None, scale: float,
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x = _resize(x, 1.0 / scale)
        if flow is not None:
            x = torch.cat((x, _resize(flow, 1.0 / scale) / scale), 1)
        out = _resize(self.lastconv(self.convblock(self.conv0(x))), scale)
        return out[:, :4] * scale, out[:, 4:5], out[:, 5:]


class IFNet(nn.Module):
    """RIFE 4.x's flow network; ``forward`` gives the frame at ``timestep`` between two frames.

    Parameter names follow the public weights (``block0.conv0.0.0.weight`` ...), except the
    encoder, always an ``encode`` Sequential (``to_kinema_keys`` renames the ``Head`` layout).
    """

    def __init__(self, config: IFNetConfig):
        super().__init__()
        self.config = config
        self.blocks = len(config.block_widths)
        for index, (inputs, width) in enumerate(zip(config.block_inputs, config.block_widths,
                                                    strict=True)):
            self.add_module(f"block{index}", IFBlock(inputs, width, config.res_convs,
                                                     config.block_outputs))
        if config.encoder_widths:
            self.encode = _encoder(config.encoder_widths, config.encoder_activations)

    @property
    def pad_multiple(self) -> int:
        """Frame sides must divide by this (the coarsest block reads 1/2^(n-1), then 1/4)."""
        return BLOCK_DOWNSAMPLING * 2 ** (self.blocks - 1)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor,
                ) -> torch.Tensor:
        """``img0``, ``img1`` ``[B,3,H,W]`` in 0..1 (sides a multiple of ``pad_multiple``),
        ``timestep`` ``[B,1,H,W]``: the in-between frames ``[B,3,H,W]``."""
        encoded = self.config.encoder_widths
        feat0 = self.encode(img0) if encoded else None
        feat1 = self.encode(img1) if encoded else None
        flow = mask = features = None
        warped0, warped1 = img0, img1
        for index in range(self.blocks):
            block = getattr(self, f"block{index}")
            scale = 2.0 ** (self.blocks - 1 - index)
            if flow is None:
                inputs = [img0, img1, *((feat0, feat1) if encoded else ()), timestep]
                flow, mask, features = block(torch.cat(inputs, 1), None, scale)
            else:
                inputs = [warped0, warped1]
                if encoded:
                    inputs += [warp(feat0, flow[:, :2]), warp(feat1, flow[:, 2:4])]
                inputs += [timestep, mask]
                if self.config.hands_features:
                    inputs.append(features)
                delta, new_mask, features = block(torch.cat(inputs, 1), flow, scale)
                flow = flow + delta
                mask = mask + new_mask if self.config.accumulates_mask else new_mask
            warped0 = warp(img0, flow[:, :2])
            warped1 = warp(img1, flow[:, 2:4])
        weight = torch.sigmoid(mask)
        return warped0 * weight + warped1 * (1 - weight)


def _encoder(widths: tuple[int, ...], activations: bool) -> nn.Sequential:
    """Stride-2 convolution, 3x3 convolutions, then a transposed convolution back to full size."""
    layers: list[nn.Module] = []
    channels = 3
    for index, width in enumerate(widths):
        if index == 0:
            layers.append(nn.Conv2d(channels, width, 3, 2, 1))
        elif index == len(widths) - 1:
            layers.append(nn.ConvTranspose2d(channels, width, 4, 2, 1))
        else:
            layers.append(nn.Conv2d(channels, width, 3, 1, 1))
        if activations and index < len(widths) - 1:
            layers.append(nn.LeakyReLU(0.2, True))
        channels = width
    return nn.Sequential(*layers)


def _resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    if factor == 1.0:
        return x
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def warp(image: torch.Tensor, flow: torch.Tensor) -> torch.Tensor:
    """``image`` ``[B,C,H,W]`` sampled at each pixel plus ``flow`` ``[B,2,H,W]`` (x, y in pixels),
    bilinear, edges repeated."""
    _, _, height, width = flow.shape
    ys = torch.linspace(-1.0, 1.0, height, device=flow.device, dtype=flow.dtype)
    xs = torch.linspace(-1.0, 1.0, width, device=flow.device, dtype=flow.dtype)
    base = torch.stack(torch.meshgrid(xs, ys, indexing="xy"), dim=-1)  # [H,W,2] as (x, y)
    # Pixels to grid units: align_corners=True puts -1 and 1 on the centres of the edge pixels.
    per_pixel = torch.tensor([2.0 / max(width - 1, 1), 2.0 / max(height - 1, 1)],
                             device=flow.device, dtype=flow.dtype)
    grid = base + flow.permute(0, 2, 3, 1) * per_pixel
    return F.grid_sample(image, grid, mode="bilinear", padding_mode="border", align_corners=True)


# --- loading -------------------------------------------------------------------------------

def config_from_weights(state: StateDict, name: str) -> IFNetConfig:
    """The IFNet configuration the tensors of ``state`` describe (keys as ``to_kinema_keys``
    gives them)."""
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    blocks = 0
    while f"block{blocks}.conv0.0.0.weight" in shapes:
        blocks += 1
    if blocks == 0:
        raise ModelLoadError(f"{name}: {EXPECTED}, got {_sample_keys(shapes)}")
    if "block0.convblock.0.conv.weight" not in shapes:
        raise ModelLoadError(f"{name}: these look like RIFE 4.0-4.4 or 3.x weights (blocks "
                             "without residual convolutions), which Kinema does not run; "
                             "use RIFE 4.5 or later (4.6, 4.7 ... 4.26)")
    widths = tuple(shapes[f"block{i}.conv0.1.0.weight"][0] for i in range(blocks))
    inputs = tuple(shapes[f"block{i}.conv0.0.0.weight"][1] for i in range(blocks))
    res_convs = len(_indices(r"block0\.convblock\.(\d+)\.conv\.weight", shapes))
    outputs = shapes["block0.lastconv.0.weight"][1] // 4
    encoder_widths, activations = _encoder_layout(shapes)
    features = encoder_widths[-1] if encoder_widths else 0
    if inputs[0] != 7 + 2 * features:
        raise ModelLoadError(f"{name}: block0 takes {inputs[0]} channels, but two frames, "
                             f"{2 * features} encoder channels and the time make "
                             f"{7 + 2 * features}; {EXPECTED}")
    hand_over = outputs - 5
    plain = 12 + 2 * features  # warped frames, warped features, time, mask, flow
    if blocks > 1 and inputs[1] not in (plain, plain + hand_over):
        raise ModelLoadError(f"{name}: block1 takes {inputs[1]} channels, expected {plain} "
                             f"(or {plain + hand_over} with features handed over); {EXPECTED}")
    return IFNetConfig(block_inputs=inputs, block_widths=widths, res_convs=res_convs,
                       block_outputs=outputs, encoder_widths=encoder_widths,
                       encoder_activations=activations,
                       hands_features=blocks > 1 and hand_over > 0
                       and inputs[1] == plain + hand_over)


def _encoder_layout(shapes: dict[str, tuple[int, ...]]) -> tuple[tuple[int, ...], bool]:
    """Encoder widths, and whether activations sit between its layers (the gaps in the
    Sequential's numbering are where they are)."""
    indices = _indices(r"encode\.(\d+)\.weight", shapes)
    if not indices:
        return (), True
    keys = [f"encode.{i}.weight" for i in indices]
    # Convolutions store [out, in, k, k]; the last layer, transposed, [in, out, k, k].
    widths = (*(shapes[k][0] for k in keys[:-1]), shapes[keys[-1]][1])
    return widths, indices[-1] > len(indices) - 1


def _indices(pattern: str, shapes: dict[str, tuple[int, ...]]) -> list[int]:
    return sorted(int(m.group(1)) for k in shapes if (m := re.fullmatch(pattern, k)))


def to_kinema_keys(state: StateDict) -> StateDict:
    """The public keys as ``IFNet``'s: no ``module.`` prefix (saved from DistributedDataParallel),
    and the ``Head`` encoder of 4.13+ (``encode.cnnN``, LeakyReLU between its layers) as the
    Sequential it equals (``encode.2N``, like 4.10-4.12)."""
    renamed = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        if m := re.fullmatch(r"encode\.cnn(\d+)\.(\w+)", key):
            key = f"encode.{2 * int(m.group(1))}.{m.group(2)}"
        renamed[key] = value
    return renamed


def load_ifnet(path: Path, name: str, device: torch.device | None = None) -> IFNet:
    """An ``IFNet`` with the weights of ``path``, in eval mode on ``device``."""
    state = to_kinema_keys(read_state_dict(path, "models/interpolate/"))
    net = IFNet(config_from_weights(state, name))
    wanted = net.state_dict()
    # Training-only parts some releases ship (teacher block, time predictor) are left out.
    missing = [k for k in wanted if k not in state]
    wrong = [k for k in wanted if k in state and state[k].shape != wanted[k].shape]
    if missing or wrong:
        example = missing[0] if missing else f"{wrong[0]} {tuple(state[wrong[0]].shape)}"
        raise ModelLoadError(f"{name}: the RIFE weights are incomplete or inconsistent "
                             f"({len(missing)} tensors missing, {len(wrong)} of the wrong "
                             f"shape, e.g. {example}); {EXPECTED}")
    net.load_state_dict({k: state[k].float() for k in wanted})
    return net.eval().to(device or inference_device())


def _sample_keys(shapes: dict[str, tuple[int, ...]]) -> str:
    keys = sorted(shapes)
    listed = ", ".join(keys[:3])
    return f"{len(keys)} tensors ({listed}{', ...' if len(keys) > 3 else ''})"


# --- inference ------------------------------------------------------------------------------

class RifeInterpolator:
    """Interpolates frame pairs with a loaded ``IFNet`` (CUDA when present, else CPU)."""

    def __init__(self, net: IFNet):
        self.net = net
        self.device = next(net.parameters()).device

    @torch.inference_mode()
    def interpolate_pair(self, a: np.ndarray, b: np.ndarray, times: list[float],
                         ) -> list[np.ndarray]:
        """Frames between uint8 RGB frames ``a`` and ``b`` ``[H,W,3]`` at each of ``times``."""
        height, width = a.shape[:2]
        img0, img1 = self._prepare(a), self._prepare(b)
        frames: list[np.ndarray] = []
        for first in range(0, len(times), TIMES_PER_BATCH):
            batch = times[first:first + TIMES_PER_BATCH]
            timestep = torch.tensor(batch, device=self.device, dtype=img0.dtype)
            timestep = timestep.view(-1, 1, 1, 1).expand(-1, 1, *img0.shape[2:])
            count = len(batch)
            out = self.net(img0.expand(count, -1, -1, -1), img1.expand(count, -1, -1, -1),
                           timestep)[:, :, :height, :width]
            out = out.clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1)
            frames += list(out.cpu().numpy())
        return frames

    def _prepare(self, frame: np.ndarray) -> torch.Tensor:
        """``[1,3,H',W']`` float in 0..1, padded at the right and bottom to the multiple.

        The edge pixels are repeated (Practical-RIFE pads with black): a flow that reaches
        into the padding then reads image content, so no dark seam creeps in at the edges.
        """
        tensor = torch.from_numpy(frame).to(self.device).permute(2, 0, 1)[None].float() / 255
        multiple = self.net.pad_multiple
        height, width = frame.shape[:2]
        return F.pad(tensor, (0, -width % multiple, 0, -height % multiple), mode="replicate")
