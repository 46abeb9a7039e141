"""The two-stream network: shapes, head skipping, odd sizes, budget, configuration round trip."""

from __future__ import annotations

import json

import pytest
import torch

from sdpm_cli.model.network import NetConfig, SDPMNet, count_flops, count_params, flops_breakdown, with_condition_channels

TINY = NetConfig(widths=(8, 16), decoder_widths=(8, 8), time_dim=16, groups=4)


def test_shapes_and_label_head_skip():
    net = SDPMNet(TINY).eval()
    x = torch.randn(3, 1, 20, 24)
    t = torch.tensor([0, 10, 499])
    with torch.no_grad():
        eps, yt = net(x, t)
        eps2, none = net(x, t, need_label=False)
    assert eps.shape == (3, 1, 20, 24) and yt.shape == (3, 2, 20, 24)
    assert none is None and torch.equal(eps, eps2)


def test_odd_sizes_are_padded_and_cropped_back():
    net = SDPMNet(NetConfig(widths=(8, 8, 8), decoder_widths=None, time_dim=16, groups=4)).eval()
    with torch.no_grad():
        eps, yt = net(torch.randn(1, 1, 13, 17), torch.tensor(5))
    assert eps.shape == (1, 1, 13, 17) and yt.shape == (1, 2, 13, 17)


def test_time_conditioning_changes_the_output():
    net = SDPMNet(TINY).eval()
    x = torch.randn(1, 1, 16, 16)
    with torch.no_grad():
        a, _ = net(x, torch.tensor([0]))
        b, _ = net(x, torch.tensor([300]))
    assert not torch.allclose(a, b)


def test_config_json_round_trip_and_rejects_unknown_fields():
    cfg = NetConfig(widths=(8, 16, 32), decoder_widths=None, attention=True)
    assert NetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown architecture fields: depth"):
        NetConfig.from_dict({**cfg.to_dict(), "depth": 3})
    with pytest.raises(ValueError):
        NetConfig(widths=(8, 16), decoder_widths=(8,))


def test_flop_counter_matches_hand_count_for_one_conv_level():
    # one level, no decoder blocks beyond one: count the convolutions by hand
    cfg = NetConfig(widths=(4,), decoder_widths=None, time_dim=8, groups=2)
    h = w = 10
    conv = lambda cin, cout, k: 2 * cin * cout * k * k * h * w  # noqa: E731
    res = lambda cin, cout: conv(cin, cout, 3) + conv(cout, cout, 3) + (conv(cin, cout, 1) if cin != cout else 0)  # noqa: E731
    lin = lambda i, o: 2 * i * o  # noqa: E731
    enc = conv(1, 4, 3) + 2 * res(4, 4) + lin(4, 8) + lin(8, 8) + 2 * lin(8, 8)  # stem, level, mid; time MLP + 2 scale/shift
    head = lambda out: res(8, 4) + lin(8, 8) + conv(4, out, 3)  # noqa: E731
    fb = flops_breakdown(cfg, h, w)
    assert fb["encoder"] == enc
    assert fb["eps_head"] == head(1) and fb["label_head"] == head(2)
    assert count_flops(cfg, h, w) == enc + head(1) + head(2)


def test_default_network_fits_the_cpu_budget():
    cfg = NetConfig()
    assert count_flops(cfg, 160, 160) <= 3.0e9  # ARCHITECTURE.md: about 3 GFLOPs per 160x160 call
    assert 1e5 < count_params(cfg) < 5e6
    assert count_params(cfg) == count_params(SDPMNet(cfg))


def test_condition_channels_are_required_and_change_the_output():
    from dataclasses import replace

    net = SDPMNet(replace(TINY, cond_channels=1)).eval()
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([0, 7])
    with torch.no_grad():
        a, ya = net(x, t, cond=torch.zeros(2, 1, 16, 16))
        b, yb = net(x, t, cond=torch.ones(2, 1, 16, 16))
    assert a.shape == (2, 1, 16, 16) and ya.shape == (2, 2, 16, 16)
    assert not torch.allclose(ya, yb)
    with pytest.raises(ValueError, match="takes 1 conditioning channel"):
        net(x, t)
    with pytest.raises(ValueError, match="takes 0 conditioning channel"):
        SDPMNet(TINY)(x, t, cond=torch.zeros(2, 1, 16, 16))
    with pytest.raises(ValueError, match="cond_channels"):
        NetConfig(cond_channels=-1)


def test_adding_a_condition_channel_keeps_the_function_until_trained():
    torch.manual_seed(1)
    net = SDPMNet(TINY).eval()
    wide = with_condition_channels(net, 1).eval()
    assert wide.cfg.cond_channels == 1 and count_params(wide) == count_params(net) + 9 * TINY.widths[0]
    x, t = torch.randn(2, 1, 16, 16), torch.tensor([0, 250])
    with torch.no_grad():
        e0, y0 = net(x, t)
        e1, y1 = wide(x, t, cond=torch.randn(2, 1, 16, 16))
    assert torch.equal(e0, e1) and torch.equal(y0, y1)
    with pytest.raises(ValueError, match="added, not removed"):
        with_condition_channels(wide, 0)
