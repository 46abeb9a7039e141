"""Growing a network wider without changing what it computes (`model.widen`)."""

from __future__ import annotations

import pytest
import torch

from sdpm_cli.model.network import NetConfig, SDPMNet, count_params
from sdpm_cli.model.widen import positions, widen, wider_config

SMALL = NetConfig(widths=(8, 16, 16), decoder_widths=(8, 8, 16), time_dim=16, groups=4, cond_channels=2)


def _outputs(net: SDPMNet, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, 1, 24, 24, generator=g)
    cond = torch.randn(3, net.cfg.cond_channels, 24, 24, generator=g) if net.cfg.cond_channels else None
    t = torch.tensor([0, 7, 300])
    with torch.no_grad():
        return net.eval()(x, t, True, cond)


def _trained_like(cfg: NetConfig, seed: int = 1) -> SDPMNet:
    """A network with every parameter random (norm affines and biases too, unlike a fresh init),
    so that a copy error anywhere shows in the outputs."""
    torch.manual_seed(seed)
    net = SDPMNet(cfg)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn_like(p) * 0.3)
    return net


def test_positions_of_old_channels_in_a_concatenated_layout():
    assert positions([(2, 3)]).tolist() == [0, 1]
    assert positions([(2, 3), (4, 6)]).tolist() == [0, 1, 3, 4, 5, 6]
    with pytest.raises(ValueError, match="cannot shrink"):
        positions([(3, 2)])


def test_wider_config_scales_groups_and_keeps_the_step_embedding():
    wide = wider_config(SMALL, (12, 24, 24), (12, 12, 24))
    assert wide.widths == (12, 24, 24) and wide.dec_widths == (12, 12, 24)
    assert wide.groups == 6 and wide.time_embed == 8 and wide.embed_dim == SMALL.embed_dim
    assert (wide.cond_channels, wide.time_dim, wide.blocks) == (SMALL.cond_channels, SMALL.time_dim, SMALL.blocks)
    with pytest.raises(ValueError, match="cannot remove channels"):
        wider_config(SMALL, (8, 8, 16), None)
    with pytest.raises(ValueError, match="GroupNorm groups would become"):
        wider_config(SMALL, (9, 18, 18), (9, 9, 18))  # 4 groups x 9/8 is not whole
    with pytest.raises(ValueError, match="number of levels"):
        wider_config(SMALL, (12, 24), None)


@pytest.mark.parametrize("widths,dec", [((12, 24, 24), (12, 12, 24)), ((16, 32, 32), (16, 16, 32)),
                                        ((24, 48, 48), (24, 24, 48))])
def test_a_widened_network_computes_what_it_grew_from(widths, dec):
    old = _trained_like(SMALL)
    torch.manual_seed(5)
    wide = widen(old, SDPMNet(wider_config(SMALL, widths, dec)))
    assert count_params(wide) > count_params(old)
    (ea, ya), (eb, yb) = _outputs(old), _outputs(wide)
    assert torch.allclose(ea, eb, atol=1e-5) and torch.allclose(ya, yb, atol=1e-5)
    # and the new channels are alive: they read the input and get gradient through their outgoing weights
    x, t = torch.randn(2, 1, 24, 24), torch.tensor([3, 90])
    eps, y = wide.train()(x, t, True, torch.randn(2, 2, 24, 24))
    (eps.square().mean() + y.square().mean()).backward()
    out_w = wide.noise_decoder.out.weight.grad
    assert out_w[:, SMALL.dec_widths[0]:].abs().sum() > 0


def test_a_new_channel_written_into_an_old_group_would_change_the_function():
    """The check behind the groups: widening to 12 channels with 4 groups (3 per group) would put a new
    channel into an old group; it is refused rather than silently changing the network."""
    old = _trained_like(SMALL)
    from dataclasses import replace

    bad = replace(SMALL, widths=(12, 24, 24), decoder_widths=(12, 12, 24), time_embed=8)
    with pytest.raises(ValueError, match="does not map onto one group"):
        widen(old, SDPMNet(bad))


def test_widening_refuses_other_changes_and_attention():
    from dataclasses import replace

    old = _trained_like(SMALL)
    other = replace(wider_config(SMALL, (12, 24, 24), (12, 12, 24)), time_dim=32)
    with pytest.raises(ValueError, match="widths \\(and groups\\) only"):
        widen(old, SDPMNet(other))
    att = NetConfig(widths=(8, 16), decoder_widths=(8, 8), time_dim=16, groups=4, attention=True)
    with pytest.raises(ValueError, match="self-attention"):
        widen(SDPMNet(att), SDPMNet(wider_config(att, (16, 32), (16, 16))))


def test_the_step_embedding_width_is_recorded_only_when_set():
    assert "time_embed" not in SMALL.to_dict()  # headers of networks never widened are unchanged
    wide = wider_config(SMALL, (16, 32, 32), None)
    assert wide.to_dict()["time_embed"] == 8
    assert NetConfig.from_dict(wide.to_dict()) == wide and NetConfig.from_dict(SMALL.to_dict()) == SMALL
