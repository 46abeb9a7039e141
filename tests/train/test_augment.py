"""Augmentation geometry (identity, mirror, quarter turn, zoom) and its label/brain invariants."""

from __future__ import annotations

import math

import torch

from sdpm_cli.train.augment import AugmentConfig, affine_matrices, augment, labels_to_pm1, warp


def _batch(seed=0, B=4, H=12, W=12):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(B, 1, H, W, generator=g) * 2 - 1
    lab = torch.randint(0, 3, (B, H, W), generator=g).to(torch.uint8)
    brain = (torch.rand(B, H, W, generator=g) > 0.3).to(torch.uint8)
    return x, lab, brain


def _theta(flip=False, deg=0.0, zoom=1.0, B=4):
    return affine_matrices(torch.full((B,), flip), torch.full((B,), math.radians(deg)), torch.full((B,), zoom))


def test_identity_flip_and_quarter_turn_are_exact():
    x, lab, brain = _batch()
    masks = torch.stack([lab, brain], 1)
    xi, mi = warp(x, masks, _theta())
    assert torch.allclose(xi, x, atol=1e-6) and torch.equal(mi, masks)
    xf, mf = warp(x, masks, _theta(flip=True))
    assert torch.allclose(xf, x.flip(-1), atol=1e-6) and torch.equal(mf, masks.flip(-1))
    xr, mr = warp(x, masks, _theta(deg=90.0))
    assert torch.allclose(xr, torch.rot90(x, 1, (2, 3)), atol=1e-5) and torch.equal(mr, torch.rot90(masks, 1, (2, 3)))


def test_zoom_enlarges_content_about_the_centre():
    lab = torch.zeros(1, 16, 16, dtype=torch.uint8)
    lab[:, 6:10, 6:10] = 1  # 4 x 4 square at the centre
    x = torch.full((1, 1, 16, 16), -1.0)
    _, m = warp(x, torch.stack([lab, lab], 1), _theta(zoom=2.0, B=1))
    assert int(m[0, 0].sum()) == 64 and torch.equal(m[0, 0, 4:12, 4:12], torch.ones(8, 8, dtype=torch.uint8))
    xz, _ = warp(x, torch.stack([lab, lab], 1), _theta(zoom=0.5, B=1))
    assert torch.all(xz == -1.0)  # outside the field stays "no brain" (-1)


def test_augment_keeps_labels_valid_and_leaves_background_alone():
    cfg = AugmentConfig(noise_std=0.5, intensity_scale=0.5, intensity_shift=0.5)
    x, lab, brain = _batch(1, B=16)
    xa, la, ba = augment(x, lab, brain, cfg, torch.Generator().manual_seed(0))
    assert xa.shape == x.shape and la.shape == lab.shape and la.dtype == torch.uint8
    assert set(la.unique().tolist()) <= {0, 1, 2} and set(ba.unique().tolist()) <= {0, 1}
    assert xa.min() >= -1 and xa.max() <= 1
    geo = AugmentConfig(noise_std=0, intensity_scale=0, intensity_shift=0)
    xg, lg, bg = augment(x, lab, brain, geo, torch.Generator().manual_seed(0))
    assert torch.equal(lg, la) and torch.equal(bg, ba)  # same draws: intensity settings do not move geometry
    outside = ba == 0
    assert torch.equal(xa[:, 0][outside], xg[:, 0][outside])  # noise/intensity only inside the brain
    assert not torch.allclose(xa[:, 0][~outside], xg[:, 0][~outside])


def test_augment_is_reproducible_from_the_generator_state():
    x, lab, brain = _batch(2)
    g = torch.Generator().manual_seed(5)
    state = g.get_state()
    a = augment(x, lab, brain, AugmentConfig(), g)
    g.set_state(state)
    b = augment(x, lab, brain, AugmentConfig(), g)
    assert all(torch.equal(u, v) for u, v in zip(a, b))


def test_labels_to_network_channels():
    lab = torch.tensor([[[0, 1, 2]]], dtype=torch.uint8)
    y = labels_to_pm1(lab)
    assert y.shape == (1, 2, 1, 3)
    assert y[0, :, 0].tolist() == [[-1.0, 1.0, -1.0], [-1.0, -1.0, 1.0]]


def test_brain_blur_keeps_the_outside_and_flat_regions():
    from sdpm_cli.train.augment import brain_blur

    x = torch.full((2, 1, 24, 24), 0.3)
    brain = torch.zeros(2, 24, 24, dtype=torch.uint8)
    brain[:, 4:20, 4:20] = 1
    x[brain.unsqueeze(1) == 0] = -1.0
    out = brain_blur(x, brain, torch.tensor([1.0, 0.0]))
    assert torch.equal(out[brain.unsqueeze(1) == 0], x[brain.unsqueeze(1) == 0])  # background stays -1
    assert torch.allclose(out[0, 0, 4:20, 4:20], torch.tensor(0.3), atol=1e-5)  # no dark rim leaks in
    x[0, 0, 12, 12] = 1.0
    out = brain_blur(x, brain, torch.tensor([1.0, 1.0]))
    assert out[0, 0, 12, 12] < 1.0 and out[0, 0, 12, 13] > 0.3  # a point spreads


def test_gamma_keeps_tissue_order():
    g = torch.Generator().manual_seed(1)
    x = torch.linspace(-1, 1, 64).view(1, 1, 8, 8).repeat(4, 1, 1, 1)
    lab = torch.zeros(4, 8, 8, dtype=torch.uint8)
    brain = torch.ones(4, 8, 8, dtype=torch.uint8)
    cfg = AugmentConfig(flip_lr=0, rotate_deg=0, scale=0, noise_std=0, intensity_scale=0, intensity_shift=0,
                        blur_prob=0, gamma=0.5)
    out, _, _ = augment(x, lab, brain, cfg, g)
    assert (out.flatten(1).diff(dim=1) >= 0).all()  # monotone
    assert not torch.allclose(out, x)


def test_the_mirror_channel_moves_with_the_image_and_keeps_saying_no_mirror():
    x, lab, brain = _batch(3, B=8)
    m = x.flip(-1).clone()
    m[:, :, :, :3] = -1.0  # no mirror there
    both = torch.cat([x, m], 1)
    geo = AugmentConfig(noise_std=0, intensity_scale=0, intensity_shift=0, gamma=0, blur_prob=0)
    a, _, _ = augment(both, lab, brain, geo, torch.Generator().manual_seed(5))
    ax, _, _ = augment(x, lab, brain, geo, torch.Generator().manual_seed(5))
    am, _, _ = augment(m, lab, brain, geo, torch.Generator().manual_seed(5))
    assert torch.allclose(a[:, :1], ax) and torch.allclose(a[:, 1:], am)  # one warp for both channels
    full = AugmentConfig(noise_std=0.3, intensity_scale=0.3, intensity_shift=0.3)
    b, _, bb = augment(both, lab, brain, full, torch.Generator().manual_seed(6))
    gone = (b[:, 1] > -1.0) & (bb == 1)
    assert gone.any()
    none_before, _, _ = augment(torch.cat([x, m], 1), lab, brain, AugmentConfig(noise_std=0, intensity_scale=0,
                                intensity_shift=0, gamma=0, blur_prob=0), torch.Generator().manual_seed(6))
    assert torch.all(b[:, 1][none_before[:, 1] <= -1.0] == -1.0)
