"""The two-stream SDPM network: one time-conditioned encoder on x_t, two light decoders.

The noise head reads eps_hat [B,1,H,W] (the shared noise), the label head reads y_t_hat [B,C,H,W]
(the noisy label at the same t, one channel per lesion class), and y0_hat is derived from both.
The encoder runs once per (x_t, t); callers that only need eps_hat (inside the `infer` chain) skip
the label decoder. The default size is set by the CPU serving budget (see README "The model"):
width, depth, blocks and attention are all in `NetConfig`, stored in every checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from sdpm_cli.labels import NUM_CLASSES


@dataclass(frozen=True)
class NetConfig:
    """Architecture as data (JSON-serialisable; a checkpoint rebuilds the net from it)."""

    in_channels: int = 1  # the diffused image
    cond_channels: int = 0  # clean conditioning channels beside it (the plan's mirror image); never noised
    num_classes: int = NUM_CLASSES
    widths: tuple[int, ...] = (16, 32, 64, 64)  # encoder channels per resolution level
    blocks: int = 1  # residual blocks per encoder level
    decoder_widths: tuple[int, ...] | None = (16, 16, 32, 64)  # None = same as widths
    decoder_blocks: int = 1  # residual blocks per decoder level (each head)
    attention: bool = False  # one self-attention block at the coarsest level
    time_dim: int = 64  # width of the time embedding MLP
    groups: int = 8  # GroupNorm groups (capped by channels)
    # Width of the sinusoidal step embedding; None = widths[0]. Set when a network is widened
    # (`model.widen`), so that the wider one reads the step exactly as the one it grew from.
    time_embed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(int(w) for w in self.widths))
        if self.decoder_widths is not None:
            object.__setattr__(self, "decoder_widths", tuple(int(w) for w in self.decoder_widths))
        if self.cond_channels < 0:
            raise ValueError("NetConfig.cond_channels must be >= 0")
        if not self.widths or min(self.widths) < 1 or self.blocks < 1 or self.decoder_blocks < 1:
            raise ValueError("NetConfig needs at least one level, positive widths and >= 1 block")
        if self.decoder_widths is not None and len(self.decoder_widths) != len(self.widths):
            raise ValueError("NetConfig.decoder_widths must have one entry per level")
        if self.time_embed is not None and self.time_embed < 2:
            raise ValueError("NetConfig.time_embed must be >= 2")

    @property
    def embed_dim(self) -> int:
        """Width of the sinusoidal step embedding the time MLP reads."""
        return self.time_embed if self.time_embed is not None else self.widths[0]

    @property
    def dec_widths(self) -> tuple[int, ...]:
        return self.decoder_widths if self.decoder_widths is not None else self.widths

    @property
    def multiple(self) -> int:
        """Input sides are padded to a multiple of this (one halving per level below the top)."""
        return 2 ** (len(self.widths) - 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["widths"] = list(self.widths)
        d["decoder_widths"] = list(self.decoder_widths) if self.decoder_widths is not None else None
        if d["time_embed"] is None:  # the default: headers of networks that were never widened stay as they were
            del d["time_embed"]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "NetConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown architecture fields: {', '.join(unknown)}")
        d = dict(d)
        for k in ("widths", "decoder_widths"):
            if d.get(k) is not None:
                d[k] = tuple(d[k])
        return cls(**d)


def timestep_embedding(t: Tensor, dim: int) -> Tensor:
    """Sinusoidal embedding of integer step indices, [B] -> [B, dim]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    emb = torch.cat([args.sin(), args.cos()], dim=1)
    return F.pad(emb, (0, dim % 2))


def _norm(ch: int, groups: int) -> nn.GroupNorm:
    g = math.gcd(ch, max(1, min(groups, ch)))
    return nn.GroupNorm(g, ch)


class ResBlock(nn.Module):
    """GroupNorm -> SiLU -> conv, time scale/shift, GroupNorm -> SiLU -> conv, plus a skip."""

    def __init__(self, cin: int, cout: int, time_dim: int, groups: int):
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, padding=1)
        self.time = nn.Linear(time_dim, 2 * cout)
        self.norm2 = _norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: Tensor, temb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.time(temb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(F.silu(h))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Single-head self-attention over pixels (only at the coarsest level: cost grows as pixels^2)."""

    def __init__(self, ch: int, groups: int):
        super().__init__()
        self.norm = _norm(ch, groups)
        self.qkv = nn.Conv2d(ch, 3 * ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, c, h * w).unbind(1)
        att = torch.softmax(torch.einsum("bci,bcj->bij", q, k) / math.sqrt(c), dim=-1)
        out = torch.einsum("bij,bcj->bci", att, v).reshape(b, c, h, w)
        return x + self.proj(out)


@dataclass
class Features:
    """What the encoder hands both decoders: skips per level, the bottom, the time embedding."""

    skips: list[Tensor]
    bottom: Tensor
    temb: Tensor
    size: tuple[int, int]  # the caller's (H, W) before padding
    extra: dict[str, Any] = field(default_factory=dict)


class Encoder(nn.Module):
    def __init__(self, cfg: NetConfig):
        super().__init__()
        w, td, g = cfg.widths, cfg.time_dim, cfg.groups
        self.cfg = cfg
        self.time_mlp = nn.Sequential(nn.Linear(cfg.embed_dim, td), nn.SiLU(), nn.Linear(td, td))
        self.stem = nn.Conv2d(cfg.in_channels + cfg.cond_channels, w[0], 3, padding=1)
        self.levels = nn.ModuleList()
        self.downs = nn.ModuleList()
        cin = w[0]
        for i, ch in enumerate(w):
            self.levels.append(nn.ModuleList([ResBlock(cin if b == 0 else ch, ch, td, g) for b in range(cfg.blocks)]))
            cin = ch
            if i < len(w) - 1:
                self.downs.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))
        self.mid = ResBlock(w[-1], w[-1], td, g)
        self.attn = SelfAttention(w[-1], g) if cfg.attention else None

    def forward(self, x: Tensor, t: Tensor, cond: Tensor | None = None) -> Features:
        if (cond is None) != (self.cfg.cond_channels == 0) or (cond is not None and cond.shape[1] != self.cfg.cond_channels):
            raise ValueError(f"this network takes {self.cfg.cond_channels} conditioning channel(s), got "
                             f"{0 if cond is None else cond.shape[1]}")
        if cond is not None:
            x = torch.cat([x, cond.to(x.dtype)], dim=1)
        H, W = x.shape[-2:]
        m = self.cfg.multiple
        ph, pw = (-H) % m, (-W) % m
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        temb = self.time_mlp(timestep_embedding(t, self.cfg.embed_dim))
        h = self.stem(x)
        skips: list[Tensor] = []
        for i, blocks in enumerate(self.levels):
            for blk in blocks:
                h = blk(h, temb)
            skips.append(h)
            if i < len(self.downs):
                h = self.downs[i](h)
        h = self.mid(h, temb)
        if self.attn is not None:
            h = self.attn(h)
        return Features(skips=skips, bottom=h, temb=temb, size=(H, W))


class Decoder(nn.Module):
    """Upsample, concatenate the encoder skip, residual blocks; one per head."""

    def __init__(self, cfg: NetConfig, out_channels: int):
        super().__init__()
        w, dw, td, g = cfg.widths, cfg.dec_widths, cfg.time_dim, cfg.groups
        self.levels = nn.ModuleList()
        ch = w[-1]
        for i in reversed(range(len(w))):
            blocks = []
            for b in range(cfg.decoder_blocks):
                blocks.append(ResBlock(ch + w[i] if b == 0 else dw[i], dw[i], td, g))
                ch = dw[i]
            self.levels.append(nn.ModuleList(blocks))
        self.out_norm = _norm(ch, g)
        self.out = nn.Conv2d(ch, out_channels, 3, padding=1)

    def forward(self, f: Features) -> Tensor:
        h = f.bottom
        for j, blocks in enumerate(self.levels):
            skip = f.skips[len(f.skips) - 1 - j]
            if h.shape[-2:] != skip.shape[-2:]:
                h = F.interpolate(h, size=skip.shape[-2:], mode="nearest")
            h = torch.cat([h, skip], dim=1)
            for k, blk in enumerate(blocks):
                h = blk(h, f.temb)
        h = self.out(F.silu(self.out_norm(h)))
        H, W = f.size
        return h[..., :H, :W]


class SDPMNet(nn.Module):
    """x_t, t (, cond) -> (eps_hat [B,1,H,W], y_t_hat [B,C,H,W] or None).

    `cond` [B, cond_channels, H, W] is clean side information the image does not carry locally (the
    mirror image across the head's midline): concatenated to x_t at the input, never diffused.
    """

    def __init__(self, cfg: NetConfig | None = None):
        super().__init__()
        self.cfg = cfg or NetConfig()
        self.encoder = Encoder(self.cfg)
        self.noise_decoder = Decoder(self.cfg, 1)
        self.label_decoder = Decoder(self.cfg, self.cfg.num_classes)

    def encode(self, x_t: Tensor, t: Tensor, cond: Tensor | None = None) -> Features:
        if t.dim() == 0:
            t = t.expand(x_t.shape[0])
        return self.encoder(x_t, t, cond)

    def eps_head(self, feats: Features) -> Tensor:
        return self.noise_decoder(feats)

    def label_head(self, feats: Features) -> Tensor:
        return self.label_decoder(feats)

    def forward(self, x_t: Tensor, t: Tensor, need_label: bool = True, cond: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
        feats = self.encode(x_t, t, cond)
        return self.eps_head(feats), (self.label_head(feats) if need_label else None)


def with_condition_channels(net: SDPMNet, cond_channels: int) -> SDPMNet:
    """The same network taking `cond_channels` conditioning channels (at least as many as it has):
    the stem's weights for the new channels are zero, so it computes exactly what `net` computes
    until training teaches it to use them (fine-tuning a released model to read a mirror image)."""
    from dataclasses import replace

    if cond_channels < net.cfg.cond_channels:
        raise ValueError("a network's conditioning channels can be added, not removed")
    wide = SDPMNet(replace(net.cfg, cond_channels=cond_channels))
    state = {k: v.clone() for k, v in net.state_dict().items()}
    w = state["encoder.stem.weight"]
    extra = cond_channels - net.cfg.cond_channels
    state["encoder.stem.weight"] = torch.cat([w, w.new_zeros(w.shape[0], extra, *w.shape[2:])], dim=1)
    wide.load_state_dict(state, strict=True)
    return wide.train(net.training)


def count_params(net_or_cfg: nn.Module | NetConfig) -> int:
    net = SDPMNet(net_or_cfg) if isinstance(net_or_cfg, NetConfig) else net_or_cfg
    return sum(p.numel() for p in net.parameters())


def flops_breakdown(cfg: NetConfig, h: int, w: int) -> dict[str, int]:
    """FLOPs (2 x multiply-adds of convolutions, linears and attention matmuls) of one slice.

    Norms and activations are not counted (they are a few percent of the convolution cost).
    """
    from torch.utils.flop_counter import FlopCounterMode

    net = SDPMNet(cfg).eval()
    x = torch.zeros(1, cfg.in_channels, h, w)
    cond = torch.zeros(1, cfg.cond_channels, h, w) if cfg.cond_channels else None
    t = torch.zeros(1, dtype=torch.long)
    out: dict[str, int] = {}
    with torch.no_grad():
        with FlopCounterMode(display=False) as fc:
            feats = net.encode(x, t, cond)
        out["encoder"] = int(fc.get_total_flops())
        with FlopCounterMode(display=False) as fc:
            net.eps_head(feats)
        out["eps_head"] = int(fc.get_total_flops())
        with FlopCounterMode(display=False) as fc:
            net.label_head(feats)
        out["label_head"] = int(fc.get_total_flops())
    out["total"] = out["encoder"] + out["eps_head"] + out["label_head"]
    return out


def count_flops(cfg: NetConfig, h: int, w: int) -> int:
    """FLOPs of one full call (encoder + both heads) on one h x w slice."""
    return flops_breakdown(cfg, h, w)["total"]
