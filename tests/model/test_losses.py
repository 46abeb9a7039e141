"""Losses: each term against its formula with a network whose outputs we control."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sdpm_cli.model.diffusion import q_sample, sigmoid_schedule
from sdpm_cli.model.losses import LossWeights, sample_t, sdpm_losses
from sdpm_cli.model.network import NetConfig, SDPMNet

S = sigmoid_schedule(500)


class Oracle(nn.Module):
    """Returns the true noise + an offset and the true noisy label + an offset."""

    def __init__(self, eps, y_t, d_eps=0.0, d_y=0.0):
        super().__init__()
        self.eps, self.y_t, self.d_eps, self.d_y = eps, y_t, d_eps, d_y

    def forward(self, x_t, t, need_label=True):
        return self.eps + self.d_eps, self.y_t + self.d_y


def _batch(B=4, C=2, n=8, seed=0):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(B, 1, n, n, generator=g) * 2 - 1
    y0 = (torch.rand(B, C, n, n, generator=g) > 0.7).float() * 2 - 1
    eps = torch.randn(B, 1, n, n, generator=g)
    return x0, y0, eps


def test_perfect_prediction_gives_zero_except_dice_floor():
    x0, y0, eps = _batch()
    t = torch.tensor([0, 3, 100, 400])
    y_t = q_sample(y0, t, eps, S)
    L = sdpm_losses(Oracle(eps, y_t), x0, y0, S, LossWeights(), t=t, eps=eps)
    for k in ("eps", "p", "d1", "d2"):
        assert L[k].item() == pytest.approx(0.0, abs=1e-9), k


def test_terms_follow_their_weights_and_windows():
    x0, y0, eps = _batch()
    t = torch.tensor([0, 3, 100, 400])
    y_t = q_sample(y0, t, eps, S)
    w = LossWeights(T_p=250, T_d=32)
    L = sdpm_losses(Oracle(eps, y_t, d_eps=0.1), x0, y0, S, w, t=t, eps=eps)
    a = torch.tensor(S.abar)[t].float()
    # L_eps: mean over samples of (1 - abar_t) * 0.01
    assert L["eps"].item() == pytest.approx(((1 - a) * 0.01).mean().item(), rel=1e-5)
    # an eps error of 0.1 moves y0_hat by 0.1 sqrt(1-abar)/sqrt(abar)
    e2 = (0.1 * (1 - a).sqrt() / a.sqrt()) ** 2
    assert L["d1"].item() == pytest.approx((torch.tensor(S.c1)[t].float() ** 2 * e2).mean().item(), rel=1e-4)
    assert L["d2"].item() == pytest.approx(e2[:2].mean().item(), rel=1e-4)  # only t < T_d
    assert L["p"].item() == pytest.approx(0.0, abs=1e-9)
    # label error only: L_p averages over t < T_p (3 of the 4 samples)
    L = sdpm_losses(Oracle(eps, y_t, d_y=0.2), x0, y0, S, w, t=t, eps=eps)
    assert L["p"].item() == pytest.approx(0.04, rel=1e-5) and L["eps"].item() == 0.0
    tot = sum(getattr(w, k) * L[k] for k in ("eps", "p", "d1", "d2", "dice"))
    assert L["total"].item() == pytest.approx(tot.item(), rel=1e-6)


def test_d1_is_bounded_where_the_unweighted_form_explodes():
    x0, y0, eps = _batch(B=1)
    t = torch.tensor([499])
    y_t = q_sample(y0, t, eps, S)
    L = sdpm_losses(Oracle(eps, y_t, d_eps=0.1), x0, y0, S, LossWeights(), t=t, eps=eps)
    unweighted = (0.1 / np.sqrt(S.abar[499])) ** 2 * (1 - S.abar[499])
    assert unweighted > 1e4  # what the authors' code back-propagates (held only by clipping)
    assert L["d1"].item() < unweighted / 1000
    # the derived weight turns an eps error into a posterior-mean error of c1 sqrt(1-abar)/sqrt(abar):
    # at most 1 at every step but the last, whose beta is clipped to 0.999 (sqrt(1/alpha) = 31.6)
    gain = S.c1 * np.sqrt((1 - S.abar) / S.abar)
    assert gain[:-1].max().item() <= 1.0 and gain[-1].item() == pytest.approx(31.6, rel=0.01)


def test_dice_reads_the_zero_threshold_and_rewards_overlap():
    x0, y0, eps = _batch(B=2)
    t = torch.tensor([0, 0])
    y_t = q_sample(y0, t, eps, S)
    good = sdpm_losses(Oracle(eps, y_t), x0, y0, S, t=t, eps=eps)["dice"].item()
    bad = sdpm_losses(Oracle(eps, -y_t), x0, y0, S, t=t, eps=eps)["dice"].item()
    assert good < 0.1 < 0.9 < bad


def test_sample_t_share_and_determinism():
    w = LossWeights(T_d=32, small_t_fraction=0.25)
    t = sample_t(16, 500, w, torch.Generator().manual_seed(1))
    assert (t[:4] < 32).all() and t.min() >= 0 and t.max() < 500
    assert torch.equal(t, sample_t(16, 500, w, torch.Generator().manual_seed(1)))


def test_real_network_gets_finite_gradients_everywhere():
    torch.manual_seed(0)
    net = SDPMNet(NetConfig(widths=(8, 16), decoder_widths=(8, 8), time_dim=16, groups=4))
    x0, y0, _ = _batch(B=4, n=16)
    L = sdpm_losses(net, x0, y0, S, generator=torch.Generator().manual_seed(0))
    L["total"].backward()
    assert set(L) == {"eps", "p", "d1", "d2", "dice", "total"}
    grads = [p.grad for p in net.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
