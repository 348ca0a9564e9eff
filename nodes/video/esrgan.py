"""Real-ESRGAN's two networks, written for Kinema, built from nothing but a state dict.

``RRDBNet`` is ESRGAN's generator (ESRGAN, BSRGAN, RealESRGAN_x4plus / x2plus / anime_6B) and
``SRVGGNetCompact`` the small VGG-style one (realesr-animevideov3, realesr-general-x4v3).
``network_from_state`` reads the architecture, scale, width and depth from the keys and shapes
of the weights and returns the network loaded, or None when the weights are something else.

Three key layouts name the same RRDBNet: BasicSR's (``conv_first``, ``body.N.rdb1.conv1``,
``conv_body``, ``conv_up1``, ``conv_hr``, ``conv_last``), BSRGAN's (``RRDB_trunk``,
``trunk_conv``, ``upconv1``, ``HRconv``) and the original ESRGAN's ``nn.Sequential`` one
(``model.0``, ``model.1.sub.N.RDB1.conv1.0``, ...); the last two are renamed to the first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import nn

StateDict = Mapping[str, torch.Tensor]
# ESRGAN scales its residuals down before adding them, which keeps a deep trunk stable.
RESIDUAL_SCALE = 0.2


def _conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1)


def _lrelu(x: torch.Tensor) -> torch.Tensor:
    return F.leaky_relu(x, 0.2)


class ResidualDenseBlock(nn.Module):
    """Five convolutions, each fed every feature map before it; a scaled residual out."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.conv1 = _conv(num_feat, num_grow_ch)
        self.conv2 = _conv(num_feat + num_grow_ch, num_grow_ch)
        self.conv3 = _conv(num_feat + 2 * num_grow_ch, num_grow_ch)
        self.conv4 = _conv(num_feat + 3 * num_grow_ch, num_grow_ch)
        self.conv5 = _conv(num_feat + 4 * num_grow_ch, num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(_lrelu(conv(torch.cat(features, 1))))
        return self.conv5(torch.cat(features, 1)) * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    """Residual in residual: three dense blocks and a scaled skip around them."""

    def __init__(self, num_feat: int, num_grow_ch: int):
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    """ESRGAN's generator: a trunk of RRDBs, then ``num_upsample`` nearest x2 + conv steps.

    Real-ESRGAN's x2 (and x1) models pixel-unshuffle the input by ``unshuffle`` first and keep
    the x4 tail, so the scale is ``2**num_upsample / unshuffle`` and both sides of the input
    must be multiples of ``unshuffle`` (``size_multiple``).
    """

    def __init__(self, num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32,
                 num_upsample: int = 2, unshuffle: int = 1, channels: int = 3):
        super().__init__()
        self.unshuffle = unshuffle
        self.size_multiple = unshuffle
        self.channels = channels
        self.scale = 2 ** num_upsample // unshuffle
        self.conv_first = _conv(channels * unshuffle * unshuffle, num_feat)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = _conv(num_feat, num_feat)
        self.upsamplers = [f"conv_up{i + 1}" for i in range(num_upsample)]
        for name in self.upsamplers:
            self.add_module(name, _conv(num_feat, num_feat))
        self.conv_hr = _conv(num_feat, num_feat)
        self.conv_last = _conv(num_feat, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for name in self.upsamplers:
            feat = _lrelu(getattr(self, name)(F.interpolate(feat, scale_factor=2.0,
                                                             mode="nearest")))
        return self.conv_last(_lrelu(self.conv_hr(feat)))


class SRVGGNetCompact(nn.Module):
    """Real-ESRGAN's compact network: plain conv + PReLU layers at the input's resolution, a
    pixel shuffle at the end, and the nearest-upscaled input added (it learns the residual)."""

    def __init__(self, num_feat: int = 64, num_conv: int = 16, upscale: int = 4,
                 channels: int = 3):
        super().__init__()
        self.scale = upscale
        self.size_multiple = 1
        self.channels = channels
        layers: list[nn.Module] = [_conv(channels, num_feat), nn.PReLU(num_feat)]
        for _ in range(num_conv):
            layers += [_conv(num_feat, num_feat), nn.PReLU(num_feat)]
        layers.append(_conv(num_feat, channels * upscale * upscale))
        self.body = nn.ModuleList(layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = x
        for layer in self.body:
            out = layer(out)
        base = F.interpolate(x, scale_factor=float(self.scale), mode="nearest")
        return F.pixel_shuffle(out, self.scale) + base


# --- reading the architecture from the weights ------------------------------------------------

_BSRGAN_NAMES = ((r"^RRDB_trunk\.", "body."), (r"\.RDB(\d)\.", r".rdb\1."),
                 (r"^trunk_conv\.", "conv_body."), (r"^upconv(\d)\.", r"conv_up\1."),
                 (r"^HRconv\.", "conv_hr."))
_SEQUENTIAL_BLOCK = re.compile(r"^model\.1\.sub\.(\d+)\.RDB(\d)\.conv(\d)\.0\.(weight|bias)$")
_SEQUENTIAL_LAYER = re.compile(r"^model\.(\d+)\.(weight|bias)$")


def rrdbnet_layout(state: StateDict) -> dict[str, torch.Tensor] | None:
    """The weights in BasicSR's RRDBNet key layout, from any of the three; None if not RRDB."""
    if "conv_first.weight" in state and "body.0.rdb1.conv1.weight" in state:
        return dict(state)
    if "RRDB_trunk.0.RDB1.conv1.weight" in state:
        renamed = {}
        for key, value in state.items():
            for pattern, replacement in _BSRGAN_NAMES:
                key = re.sub(pattern, replacement, key)
            renamed[key] = value
        return renamed
    if "model.0.weight" in state and "model.1.sub.0.RDB1.conv1.0.weight" in state:
        return _from_sequential(state)
    return None


def _from_sequential(state: StateDict) -> dict[str, torch.Tensor]:
    # The original ESRGAN is one nn.Sequential: conv_first, the trunk (its last entry is the
    # trunk conv), then [upsample, conv, lrelu] per x2 step (convs at 3, 6 ...), conv_hr,
    # lrelu, conv_last.
    blocks = [int(m.group(1)) for k in state if (m := _SEQUENTIAL_BLOCK.match(k))]
    layers = [int(m.group(1)) for k in state if (m := _SEQUENTIAL_LAYER.match(k))]
    last = max(layers)
    names = {0: "conv_first", last - 2: "conv_hr", last: "conv_last"}
    names.update({3 * (i + 1): f"conv_up{i + 1}" for i in range((last - 4) // 3)})
    trunk_conv = f"model.1.sub.{max(blocks) + 1}."
    renamed = {}
    for key, value in state.items():
        if block := _SEQUENTIAL_BLOCK.match(key):
            index, rdb, conv, kind = block.groups()
            key = f"body.{index}.rdb{rdb}.conv{conv}.{kind}"
        elif key.startswith(trunk_conv):
            key = "conv_body." + key[len(trunk_conv):]
        elif (layer := _SEQUENTIAL_LAYER.match(key)) and int(layer.group(1)) in names:
            key = f"{names[int(layer.group(1))]}.{layer.group(2)}"
        renamed[key] = value
    return renamed


def _build_rrdbnet(state: StateDict) -> RRDBNet:
    first, last = state["conv_first.weight"], state["conv_last.weight"]
    channels = last.shape[0]
    unshuffle = math.isqrt(first.shape[1] // channels)
    if unshuffle * unshuffle * channels != first.shape[1]:
        raise ValueError(f"RRDBNet weights take {first.shape[1]} input channels for "
                         f"{channels} output channels; expected 1, 4 or 16 times as many")
    blocks = {int(k.split(".")[1]) for k in state if k.startswith("body.")}
    upsamplers = {k.split(".")[0] for k in state if re.match(r"^conv_up\d+\.", k)}
    return RRDBNet(num_feat=first.shape[0], num_block=len(blocks),
                   num_grow_ch=state["body.0.rdb1.conv1.weight"].shape[0],
                   num_upsample=len(upsamplers), unshuffle=unshuffle, channels=channels)


def _build_srvgg(state: StateDict) -> SRVGGNetCompact | None:
    if not state or not all(re.match(r"^body\.\d+\.(weight|bias)$", k) for k in state):
        return None
    convs = sorted(int(k.split(".")[1]) for k, v in state.items()
                   if k.endswith(".weight") and v.ndim == 4)
    if len(convs) < 2:
        return None
    first, last = state[f"body.{convs[0]}.weight"], state[f"body.{convs[-1]}.weight"]
    channels = first.shape[1]
    upscale = math.isqrt(last.shape[0] // channels)
    if upscale < 1 or upscale * upscale * channels != last.shape[0]:
        return None
    return SRVGGNetCompact(num_feat=first.shape[0], num_conv=len(convs) - 2, upscale=upscale,
                           channels=channels)


def network_from_state(state: StateDict) -> RRDBNet | SRVGGNetCompact | None:
    """The RRDBNet or SRVGGNetCompact these weights belong to, loaded and in eval mode; None
    when they are another architecture (their keys are not exactly the network's).

    Raises ``ValueError`` when the keys are one of these networks but the shapes do not fit.
    """
    rrdb = rrdbnet_layout(state)
    if rrdb is not None:
        state, network = rrdb, _build_rrdbnet(rrdb)
    else:
        network = _build_srvgg(state)
    if network is None or set(network.state_dict()) != set(state):
        return None
    try:
        network.load_state_dict(state)
    except RuntimeError as exc:
        raise ValueError(f"the weights have {type(network).__name__}'s keys but not its "
                         f"shapes ({exc})") from None
    return network.eval().requires_grad_(False)
