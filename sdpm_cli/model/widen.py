"""Grow a trained network into a wider one that computes exactly what it computed.

Why: a wider network trained from scratch on 2 CPU cores never catches up with the shipped one in
the steps a session allows (MODEL_CARD "Does more capacity help?"), so the capacity question was
never answered at the shipped model's quality. Widening keeps every trained weight and adds
channels that start silent, so training begins where the shipped model is and the new channels add
only what they learn.

How (function-preserving, in the spirit of Net2Net's wider operator, with zeros instead of copies):
every old channel keeps its weights; a new channel reads every input (fresh random weights from the
wide network's own initialisation) but every weight *from* a new channel *into* an old one is zero;
GroupNorm groups of old channels stay exactly the old groups (new channels form groups of their
own), and the step embedding keeps its width (`NetConfig.time_embed`). Old channels therefore see
exactly the old computation and the outputs are equal up to float rounding (tested).

A channel space is described by its layout: segments (old count, new count) in order, old channels
first in each segment - a concatenation (the decoder's [upsampled, skip], the time projection's
[scale, shift]) is several segments.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Sequence

import torch
from torch import nn

from sdpm_cli.model.network import Decoder, Encoder, NetConfig, ResBlock, SDPMNet

Layout = Sequence[tuple[int, int]]


def wider_config(cfg: NetConfig, widths: Sequence[int], decoder_widths: Sequence[int] | None) -> NetConfig:
    """`cfg` with new channel counts (each at least the old), GroupNorm groups scaled with the first
    level's width so each old group maps onto one new group, and the step embedding's width fixed."""
    widths = tuple(int(w) for w in widths)
    dec = tuple(int(w) for w in decoder_widths) if decoder_widths is not None else None
    old_dec = cfg.dec_widths
    new_dec = dec if dec is not None else widths
    if len(widths) != len(cfg.widths) or len(new_dec) != len(old_dec):
        raise ValueError("widening keeps the number of levels")
    if any(n < o for n, o in zip(widths + new_dec, cfg.widths + old_dec)):
        raise ValueError("widening cannot remove channels")
    groups = cfg.groups * widths[0] / cfg.widths[0]
    if groups != int(groups):
        raise ValueError(f"cannot widen {cfg.widths[0]} -> {widths[0]} channels exactly: the "
                         f"{cfg.groups} GroupNorm groups would become {groups:g}")
    return replace(cfg, widths=widths, decoder_widths=dec, groups=int(groups), time_embed=cfg.embed_dim)


def positions(layout: Layout) -> torch.Tensor:
    """New indices of the old channels of a layout, in their old order."""
    out, offset = [], 0
    for n_old, n_new in layout:
        if n_new < n_old:
            raise ValueError("a layout segment cannot shrink")
        out.extend(range(offset, offset + n_old))
        offset += n_new
    return torch.tensor(out, dtype=torch.long)


def _size(layout: Layout, new: bool = True) -> int:
    return sum(s[1] if new else s[0] for s in layout)


def _cat(*layouts: Layout) -> list[tuple[int, int]]:
    return [seg for lay in layouts for seg in lay]


def _weights(wide: torch.Tensor, old: torch.Tensor, out_layout: Layout, in_layout: Layout | None) -> torch.Tensor:
    """`wide` [out, in, ...] with the old block in place and zero weight from new inputs to old outputs."""
    w = wide.detach().clone()
    po = positions(out_layout)
    if in_layout is None:  # a per-channel vector (bias, norm affine)
        w[po] = old
        return w
    pi = positions(in_layout)
    w[po] = 0.0
    w[po[:, None], pi[None, :]] = old
    return w


def _linear_or_conv(wide: nn.Module, old: nn.Module, out_layout: Layout, in_layout: Layout) -> None:
    if wide.weight.shape[0] != _size(out_layout) or wide.weight.shape[1] != _size(in_layout):
        raise ValueError(f"layout does not match {type(wide).__name__} of shape {tuple(wide.weight.shape)}")
    if old.weight.shape[0] != _size(out_layout, False) or old.weight.shape[1] != _size(in_layout, False):
        raise ValueError(f"layout does not match the old {type(old).__name__} of shape {tuple(old.weight.shape)}")
    with torch.no_grad():
        wide.weight.copy_(_weights(wide.weight, old.weight, out_layout, in_layout))
        if old.bias is not None:
            wide.bias.copy_(_weights(wide.bias, old.bias, out_layout, None))


def _group_norm(wide: nn.GroupNorm, old: nn.GroupNorm, layout: Layout) -> None:
    """Copy the affine parameters; refuse where an old group would not be exactly one new group
    (its statistics, and so every old channel after it, would change)."""
    pos = positions(layout).tolist()
    go, gn = old.num_channels // old.num_groups, wide.num_channels // wide.num_groups
    for k in range(old.num_groups):
        members = pos[k * go:(k + 1) * go]
        if go != gn or members[0] % gn or members != list(range(members[0], members[0] + gn)):
            raise ValueError(f"cannot widen exactly: GroupNorm group {k} of {old.num_channels} channels "
                             f"({old.num_groups} groups) does not map onto one group of the wider norm "
                             f"({wide.num_channels} channels, {wide.num_groups} groups)")
    with torch.no_grad():
        wide.weight.copy_(_weights(wide.weight, old.weight, layout, None))
        wide.bias.copy_(_weights(wide.bias, old.bias, layout, None))


def _block(wide: ResBlock, old: ResBlock, cin: Layout, cout: Layout, time_dim: int) -> None:
    _group_norm(wide.norm1, old.norm1, cin)
    _linear_or_conv(wide.conv1, old.conv1, cout, cin)
    _linear_or_conv(wide.time, old.time, _cat(cout, cout), [(time_dim, time_dim)])  # [scale, shift]
    _group_norm(wide.norm2, old.norm2, cout)
    _linear_or_conv(wide.conv2, old.conv2, cout, cout)
    if isinstance(old.skip, nn.Identity) != isinstance(wide.skip, nn.Identity):
        raise ValueError("widening changed whether a block's skip is a projection")
    if not isinstance(old.skip, nn.Identity):
        _linear_or_conv(wide.skip, old.skip, cout, cin)


def _encoder(wide: Encoder, old: Encoder, ow: NetConfig, nw: NetConfig) -> list[list[tuple[int, int]]]:
    """Copy the encoder; returns the layout of each level's skip features."""
    td = ow.time_dim
    with torch.no_grad():  # the time MLP keeps its shape: the embedding width is fixed
        wide.time_mlp.load_state_dict(old.time_mlp.state_dict())
    cin_img = ow.in_channels + ow.cond_channels
    lay = [(ow.widths[0], nw.widths[0])]
    _linear_or_conv(wide.stem, old.stem, lay, [(cin_img, cin_img)])
    skips = []
    for i, (wb, ob) in enumerate(zip(wide.levels, old.levels)):
        ch = [(ow.widths[i], nw.widths[i])]
        for wblk, oblk in zip(wb, ob):
            _block(wblk, oblk, lay, ch, td)
            lay = ch
        skips.append(list(lay))
        if i < len(old.downs):
            _linear_or_conv(wide.downs[i], old.downs[i], lay, lay)
    _block(wide.mid, old.mid, lay, lay, td)
    return skips


def _decoder(wide: Decoder, old: Decoder, ow: NetConfig, nw: NetConfig, skips: list) -> None:
    td = ow.time_dim
    lay: list[tuple[int, int]] = [(ow.widths[-1], nw.widths[-1])]
    for j, (wb, ob) in enumerate(zip(wide.levels, old.levels)):
        i = len(ow.widths) - 1 - j
        out = [(ow.dec_widths[i], nw.dec_widths[i])]
        for b, (wblk, oblk) in enumerate(zip(wb, ob)):
            cin = _cat(lay, skips[i]) if b == 0 else lay
            _block(wblk, oblk, cin, out, td)
            lay = out
    _group_norm(wide.out_norm, old.out_norm, lay)
    n_out = old.out.weight.shape[0]
    _linear_or_conv(wide.out, old.out, [(n_out, n_out)], lay)


def widen(old: SDPMNet, wide: SDPMNet) -> SDPMNet:
    """Write `old`'s weights into `wide` (built from `wider_config(old.cfg, ...)`, holding its own
    random initialisation for the new channels) so that `wide` computes what `old` computes; returns
    `wide`. Attention blocks are refused (their scale depends on the channel count)."""
    ow, nw = old.cfg, wide.cfg
    if ow.attention or nw.attention:
        raise ValueError("widening a network with self-attention is not supported")
    same = replace(nw, widths=ow.widths, decoder_widths=ow.decoder_widths, groups=ow.groups, time_embed=ow.time_embed)
    if same != ow or nw.embed_dim != ow.embed_dim:
        raise ValueError("the wider network must differ from the old one in its widths (and groups) only")
    skips = _encoder(wide.encoder, old.encoder, ow, nw)
    _decoder(wide.noise_decoder, old.noise_decoder, ow, nw, skips)
    _decoder(wide.label_decoder, old.label_decoder, ow, nw, skips)
    return wide.train(old.training)
