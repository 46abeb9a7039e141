"""The two-stream network: shapes, head skipping, odd sizes, budget, configuration round trip."""

from __future__ import annotations

import json

import pytest
import torch

from sdpm_cli.model.network import NetConfig, SDPMNet, count_flops, count_params, flops_breakdown

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
