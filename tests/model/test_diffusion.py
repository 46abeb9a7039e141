"""Schedule values, the shared-noise forward process and the posterior against closed forms."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from sdpm_cli.model.diffusion import (
    jump_coefficients,
    posterior_mean,
    predict_z0,
    q_sample,
    sigmoid_schedule,
    step_indices,
)

S = sigmoid_schedule(500)


def _sig(v: float) -> float:
    return 1.0 / (1.0 + math.exp(-v))


def test_schedule_values_at_documented_steps():
    # abar(0) = f(1/T), abar(249) = f(1/2) = 0.5 exactly, abar(499) = f(499/500) * (1 - 0.999)
    f = lambda s: (_sig(3) - _sig(6 * s - 3)) / (_sig(3) - _sig(-3))  # noqa: E731
    assert S.abar[0].item() == pytest.approx(f(1 / 500), rel=1e-12)
    assert S.abar[0].item() == pytest.approx(0.9994, abs=5e-5)
    assert S.abar[249].item() == pytest.approx(0.5, abs=1e-12)
    assert S.abar[499].item() == pytest.approx(f(499 / 500) * 0.001, rel=1e-9)
    assert S.abar[499].item() == pytest.approx(6.0e-7, rel=0.02)
    assert S.betas.max().item() == pytest.approx(0.999)  # the last beta is clipped
    assert np.all(S.betas >= 0) and np.all(S.abar[1:] < S.abar[:-1])
    assert S.abar.dtype == np.float64 and not S.abar.flags.writeable  # shared, frozen constants


def test_schedule_length_and_prev_and_p2():
    s = sigmoid_schedule(100)
    assert s.T == 100 and s.abar.size == 100 and s.abar[49].item() == pytest.approx(0.5)
    assert S.abar_prev[0].item() == 1.0
    assert np.array_equal(S.abar_prev[1:], S.abar[:-1])
    assert np.allclose(S.p2, 1.0 / (1.0 + S.abar / (1.0 - S.abar)))
    assert np.array_equal(S.sqrt_abar, np.sqrt(S.abar)) and np.array_equal(S.sqrt_one_minus_abar, np.sqrt(1 - S.abar))
    with pytest.raises(ValueError):
        sigmoid_schedule(1)


def test_one_noise_is_shared_by_image_and_every_label_channel():
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(3, 1, 8, 8, generator=g) * 2 - 1
    y0 = (torch.rand(3, 2, 8, 8, generator=g) > 0.5).double() * 2 - 1
    eps = torch.randn(3, 1, 8, 8, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 249, 499])
    x_t = q_sample(x0.double(), t, eps, S)
    y_t = q_sample(y0, t, eps, S)
    a = torch.tensor(S.abar[t.numpy()]).reshape(-1, 1, 1, 1)
    assert torch.allclose(x_t, a.sqrt() * x0 + (1 - a).sqrt() * eps)
    # the same maths on numpy arrays (the samplers' kind) gives the same numbers
    x_np = q_sample(x0.double().numpy(), t.numpy(), eps.numpy(), S)
    assert isinstance(x_np, np.ndarray) and np.allclose(x_np, x_t.numpy(), rtol=0, atol=1e-12)
    # the difference between label and image carries no noise at all: synchronous diffusion
    for c in range(2):
        assert torch.allclose(y_t[:, c : c + 1] - x_t, a.sqrt() * (y0[:, c : c + 1] - x0))
    # and the true noise inverts both streams
    assert torch.allclose(predict_z0(y_t, t, eps, S), y0)


def test_posterior_against_closed_form_gaussian_product():
    # q(z_{t-1}|z_t,z0) ∝ N(z_t; sqrt(a_t) z_{t-1}, b_t) N(z_{t-1}; sqrt(abar_{t-1}) z0, 1-abar_{t-1})
    for k in (1, 100, 249, 498):
        a_t, b_t = S.alphas[k].item(), S.betas[k].item()
        ap = S.abar_prev[k].item()
        prec = a_t / b_t + 1.0 / (1.0 - ap)
        var = 1.0 / prec
        z_t, z0 = 0.3, -0.8
        mean = var * (math.sqrt(a_t) * z_t / b_t + math.sqrt(ap) * z0 / (1.0 - ap))
        got = posterior_mean(torch.tensor([[z_t]], dtype=torch.float64), torch.tensor([[z0]], dtype=torch.float64),
                             torch.tensor([k]), S).item()
        assert got == pytest.approx(mean, rel=1e-10)
        assert S.sigma2[k].item() == pytest.approx(var, rel=1e-10)
    # at the first step the posterior collapses onto z0
    assert S.c1[0].item() == pytest.approx(1.0) and S.c2[0].item() == 0.0 and S.sigma2[0].item() == 0.0


def test_strided_jump_reduces_to_posterior_and_keeps_marginals():
    for k in (1, 57, 300):
        c1, c2, s2 = jump_coefficients(S, k, k - 1)
        assert (c1, c2, s2) == pytest.approx((S.c1[k].item(), S.c2[k].item(), S.sigma2[k].item()), rel=1e-10)
    # a jump t -> s maps the marginal q(z_t|z0) onto q(z_s|z0): mean and variance match
    t, s = 400, 120
    c1, c2, s2 = jump_coefficients(S, t, s)
    at, as_ = S.abar[t].item(), S.abar[s].item()
    assert c1 + c2 * math.sqrt(at) == pytest.approx(math.sqrt(as_), rel=1e-10)
    assert c2**2 * (1 - at) + s2 == pytest.approx(1 - as_, rel=1e-10)
    with pytest.raises(ValueError):
        jump_coefficients(S, 5, 5)


def test_step_indices():
    assert step_indices(249, None) == list(range(249, -1, -1))
    assert step_indices(249, 5) == [249, 187, 124, 62, 0]
    assert step_indices(249, 1) == [249]
    assert step_indices(3, 10) == [3, 2, 1, 0]
