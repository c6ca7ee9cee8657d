"""The network, the clamp and the loss terms."""

import pytest
import torch
import torch.nn.functional as F

from dcign.clamp import clamp_to_batch_mean, invariance_penalty
from dcign.config import ConfigError, ModelConfig
from dcign.model import DCIGN, UpsampleConv2d, loss_terms

TINY = dict(filters=(4, 4, 4), latent=8)


@pytest.mark.parametrize("resolution, feature", [(16, 2), (20, 2), (32, 4), (150, 18)])
def test_shapes_at_any_resolution(resolution, feature):
    torch.manual_seed(0)
    model = DCIGN(ModelConfig(resolution=resolution, filters=(2, 2, 2), latent=6))
    assert model.config.feature_size == feature
    x = torch.rand(3, 1, resolution, resolution)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 6)
    out = model(x, active="light", invariance=0.01)
    assert out.logits.shape == x.shape and out.z.shape == (3, 6)
    img = model.decode(mu)
    assert img.shape == x.shape and img.min() >= 0 and img.max() <= 1


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("side", [1, 4, 9])
def test_upsample_conv_equals_nearest_upsampling_then_the_same_conv(k, side):
    torch.manual_seed(0)
    layer = UpsampleConv2d(3, 5, k).double()
    x = torch.randn(2, 3, side, side, dtype=torch.float64, requires_grad=True)
    fused = layer(x)
    reference = F.conv2d(F.interpolate(x, scale_factor=2, mode="nearest"), layer.weight, layer.bias, padding=k // 2)
    assert fused.shape == reference.shape == (2, 5, 2 * side, 2 * side)
    torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)
    # The same function of the same parameters: equal gradients too.
    g = torch.randn_like(fused)
    grads = torch.autograd.grad(fused, (x, layer.weight, layer.bias), g)
    ref_grads = torch.autograd.grad(reference, (x, layer.weight, layer.bias), g)
    for a, b in zip(grads, ref_grads, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_groups_and_clamp_mask():
    model = DCIGN(ModelConfig(resolution=16, filters=(4, 4, 4), latent=10, z_azimuth=2, z_light=3))
    assert model.groups == {
        "azimuth": slice(0, 2),
        "elevation": slice(2, 3),
        "light": slice(3, 6),
        "intrinsic": slice(6, 10),
    }
    assert model.clamp_mask("light").tolist() == [True] * 3 + [False] * 3 + [True] * 4
    assert model.clamp_mask("intrinsic").tolist() == [True] * 6 + [False] * 4


def test_bad_model_config():
    with pytest.raises(ConfigError, match="latent"):
        ModelConfig(latent=3).validate()
    with pytest.raises(ConfigError, match=r"filters has 3 entries .* images are 4x4: at most 2 fit; use fewer filters"):
        ModelConfig(resolution=4).validate()


def test_clamp_forward_and_gradient():
    torch.manual_seed(0)
    z = torch.randn(5, 4, requires_grad=True)
    mask = torch.tensor([True, False, True, False])
    out = clamp_to_batch_mean(z, mask, 0.3)
    mean = z.detach().mean(0)
    assert torch.allclose(out[:, mask], mean[mask].expand(5, 2))
    assert torch.equal(out[:, ~mask], z.detach()[:, ~mask])
    g = torch.randn(5, 4)
    out.backward(g)
    assert torch.equal(z.grad[:, ~mask], g[:, ~mask])  # the active group: its true gradient
    assert torch.allclose(z.grad[:, mask], 0.3 * (z.detach() - mean)[:, mask])  # clamped: lambda (z - mean)


def test_clamp_through_mean_adds_the_batch_means_gradient():
    torch.manual_seed(0)
    z = torch.randn(5, 4, requires_grad=True)
    mask = torch.tensor([True, False, True, False])
    g = torch.randn(5, 4)
    clamp_to_batch_mean(z, mask, 0.3, through_mean=True).backward(g)
    mean = z.detach().mean(0)
    assert torch.equal(z.grad[:, ~mask], g[:, ~mask])
    # autograd's gradient of where(mask, mean(z), z), plus the pull: the mean's rows share it
    z2 = z.detach().clone().requires_grad_(True)
    torch.where(mask, z2.mean(0, keepdim=True), z2).backward(g)
    expected = z2.grad + 0.3 * (z.detach() - mean)
    assert torch.allclose(z.grad[:, mask], expected[:, mask])
    assert torch.allclose(z.grad[:, mask], (g.mean(0) + 0.3 * (z.detach() - mean))[:, mask])


def _model_grads(model, x, eps, lam, active, clamp_grad):
    """Parameter gradients of the model's own clamped forward pass and loss terms."""
    model.zero_grad()
    out = model(x, active=active, invariance=lam, eps=eps, clamp_grad=clamp_grad)
    t = loss_terms(model, out, x, active)
    (t["recon"] + t["kl"]).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}, t


def _reference_grads(model, x, eps, lam, active, stop_mean):
    """The same gradients written out: decode(where(inactive, mean, z)) + lambda/2 ||z - mean||^2,
    the mean a constant to the decoder's gradient (the paper) or not."""
    model.zero_grad()
    mu, logvar = model.encode(x)
    z = mu + eps * torch.exp(0.5 * logvar)
    mask = model.clamp_mask(active)
    mean = z.mean(0, keepdim=True)
    logits = model.decoder(torch.where(mask, mean.detach() if stop_mean else mean, z))
    recon = F.binary_cross_entropy_with_logits(logits, x, reduction="sum") / len(x)
    kl = 0.5 * (mu.pow(2) + logvar.exp() - 1 - logvar).sum() / len(x)
    (recon + kl + lam * invariance_penalty(z, mask)).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}, invariance_penalty(z, mask).detach()


@pytest.mark.parametrize("active", ["azimuth", "light", "intrinsic"])
def test_clamp_equals_mean_replacement_plus_penalty(active):
    """Model gradients equal those of decode(where(inactive, stop_grad(mean), z)) + lambda/2 ||z - mean||^2
    (clamp_grad="replace", the paper), and without the stop-gradient for clamp_grad="mean"."""
    torch.manual_seed(0)
    model = DCIGN(ModelConfig(resolution=16, recon="bernoulli", **TINY))
    x, eps, lam = torch.rand(6, 1, 16, 16), torch.randn(6, 8), 0.05
    got = {}
    for clamp_grad in ("replace", "mean"):
        got[clamp_grad], t = _model_grads(model, x, eps, lam, active, clamp_grad)
        want, penalty = _reference_grads(model, x, eps, lam, active, stop_mean=clamp_grad == "replace")
        for n in want:
            assert torch.allclose(got[clamp_grad][n], want[n], rtol=1e-4, atol=1e-6), (clamp_grad, n)
        assert torch.allclose(t["invariance"], penalty)
    # with "mean" the encoder also learns from the clamped latents' reconstruction
    enc = [n for n in got["mean"] if n.startswith("encoder")]
    assert any(not torch.allclose(got["mean"][n], got["replace"][n]) for n in enc)


def test_eval_uses_mean_and_training_samples():
    torch.manual_seed(0)
    model = DCIGN(ModelConfig(resolution=16, **TINY))
    x = torch.rand(4, 1, 16, 16)
    model.eval()
    a, b = model(x), model(x)
    assert torch.equal(a.z, a.mu) and torch.equal(a.logits, b.logits)
    model.train()
    assert not torch.equal(model(x).z, a.mu)


def test_linear_init_std():
    model = DCIGN(ModelConfig(resolution=32, filters=(8, 8, 8), latent=50, init_std=0.01))
    w = model.encoder.fc.weight
    assert abs(w.std().item() - 0.01) < 0.001 and model.encoder.fc.bias.abs().max() == 0


def test_loss_terms():
    torch.manual_seed(0)
    model = DCIGN(ModelConfig(resolution=16, recon="bernoulli", **TINY))
    x = torch.rand(4, 1, 16, 16)
    out = model(x, active=None)
    t = loss_terms(model, out, x, None)
    bce = F.binary_cross_entropy(torch.sigmoid(out.logits), x, reduction="sum") / 4
    assert torch.allclose(t["recon"], bce, rtol=1e-4) and t["kl"] >= 0 and t["invariance"] == 0
    g = DCIGN(ModelConfig(resolution=16, recon="gaussian", gaussian_std=0.5, **TINY))
    out = g(x)
    mse = (torch.sigmoid(out.logits) - x).pow(2).sum() / (2 * 0.25) / 4
    assert torch.allclose(loss_terms(g, out, x, None)["recon"], mse, rtol=1e-5)


@pytest.mark.parametrize("active", ["azimuth", "intrinsic"])
def test_kl_masking_removes_the_kl_gradient_of_clamped_latents(active):
    torch.manual_seed(0)
    model = DCIGN(ModelConfig(resolution=16, **TINY))
    x = torch.rand(5, 1, 16, 16)
    out = model(x, active=active, invariance=0.0)
    clamped = model.clamp_mask(active)
    grads = {}
    for kl_clamped in (False, True):
        kl = loss_terms(model, out, x, active, kl_clamped)["kl"]
        grads[kl_clamped] = torch.autograd.grad(kl, (out.mu, out.logvar), retain_graph=True)
    for g in grads[False]:  # released code: the prior pulls only on the active group
        assert torch.all(g[:, clamped] == 0) and torch.all(g[:, ~clamped].abs().sum(0) > 0)
    for g in grads[True]:  # the prior on every latent
        assert torch.all(g.abs().sum(0) > 0)
    # The entangled baseline has no clamped latents: the flag changes nothing.
    plain = model(x, active=None)
    assert loss_terms(model, plain, x, None, False)["kl"] == loss_terms(model, plain, x, None, True)["kl"]


@pytest.mark.parametrize("norm, conv_init", [("group", "default"), ("none", "he"), ("group", "he")])
def test_normalisation_and_init_options_build_and_run(norm, conv_init):
    torch.manual_seed(0)
    cfg = ModelConfig(resolution=16, filters=(4, 8, 8), latent=8, norm=norm, norm_groups=4, conv_init=conv_init)
    model = DCIGN(cfg)
    n_norm = sum(isinstance(m, torch.nn.GroupNorm) for m in model.modules())
    assert n_norm == (6 if norm == "group" else 0)  # 3 encoder + 3 decoder hidden convs
    if conv_init == "he":
        w = model.encoder.convs[0].weight
        assert abs(w.std().item() - (2 / w[0].numel()) ** 0.5) < 0.3 * (2 / w[0].numel()) ** 0.5
    out = model(torch.rand(4, 1, 16, 16), active="light", invariance=0.01)
    assert out.logits.shape == (4, 1, 16, 16)


def test_clamp_to_first_sets_the_first_code_and_shares_its_gradient():
    """to="first" (the released code): forward is where(mask, z[0], z); with through_mean the first row
    gets the summed gradient of every clamped row (autograd's), without it only the pull to the mean."""
    torch.manual_seed(0)
    z = torch.randn(5, 4, requires_grad=True)
    mask = torch.tensor([True, False, True, False])
    out = clamp_to_batch_mean(z, mask, 0.3, to="first")
    assert torch.equal(out[:, mask], z.detach()[:1, mask].expand(5, -1)) and torch.equal(out[:, ~mask], z[:, ~mask])
    g = torch.randn(5, 4)
    out.backward(g)
    pull = 0.3 * (z.detach() - z.detach().mean(0))
    assert torch.equal(z.grad[:, ~mask], g[:, ~mask]) and torch.allclose(z.grad[:, mask], pull[:, mask])
    z.grad = None
    clamp_to_batch_mean(z, mask, 0.3, through_mean=True, to="first").backward(g)
    z2 = z.detach().clone().requires_grad_(True)
    torch.where(mask, z2[:1], z2).backward(g)
    assert torch.allclose(z.grad[:, mask], (z2.grad + pull)[:, mask])
    assert torch.allclose(z.grad[0, mask], (g.sum(0) + pull[0])[mask])
    with pytest.raises(ValueError, match="clamp target"):
        clamp_to_batch_mean(z, mask, 0.3, to="last")


@pytest.mark.parametrize("active", ["azimuth", "intrinsic"])
def test_own_recon_trains_the_decoder_only_on_each_images_own_code(active):
    """own_recon adds w * NLL(decode(stop_grad(mu)), x): the decoder's gradients gain exactly that term's,
    the encoder's are those of the paper's objective alone."""
    torch.manual_seed(0)
    model = DCIGN(ModelConfig(resolution=16, recon="bernoulli", **TINY))
    x, eps, lam, w = torch.rand(6, 1, 16, 16), torch.randn(6, 8), 0.05, 0.7
    paper, _ = _model_grads(model, x, eps, lam, active, "replace")
    model.zero_grad()
    out = model(x, active=active, invariance=lam, eps=eps, own_recon=True)
    t = loss_terms(model, out, x, active)
    (t["recon"] + t["kl"] + w * t["own_recon"]).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    # the written-out own term, on the posterior mean
    model.zero_grad()
    mu, _ = model.encode(x)
    own = F.binary_cross_entropy_with_logits(model.decoder(mu.detach()), x, reduction="sum") / len(x)
    assert torch.allclose(t["own_recon"], own.detach(), rtol=1e-5)
    (w * own).backward()
    for n, p in model.named_parameters():
        if n.startswith("encoder"):
            assert p.grad is None and torch.allclose(got[n], paper[n], rtol=1e-4, atol=1e-6), n
        else:
            assert torch.allclose(got[n], paper[n] + p.grad, rtol=1e-4, atol=1e-6), n
    assert torch.equal(out.logits, model(x, active=active, invariance=lam, eps=eps).logits)  # clamped path unchanged


@pytest.mark.parametrize("active", ["azimuth", "intrinsic"])
def test_edit_recon_decodes_the_partners_code_with_the_own_active_group(active):
    """Known answer: the edit term is NLL(decode(where(clamped, mu[partner], mu)), x) over the images whose
    partner is another image; the gradients gain exactly its gradient, encoder and decoder alike."""
    torch.manual_seed(0)
    model = DCIGN(ModelConfig(resolution=16, recon="bernoulli", **TINY))
    x, eps, lam = torch.rand(6, 1, 16, 16), torch.randn(6, 8), 0.05
    paper, t_paper = _model_grads(model, x, eps, lam, active, "replace")
    partner = torch.tensor([3, 1, 0, 3, 2, 5])  # images 0, 2 and 4 have another image as partner
    model.zero_grad()
    out = model(x, active=active, invariance=lam, eps=eps, partner=partner)
    assert out.edit_rows.tolist() == [0, 2, 4]
    t = loss_terms(model, out, x, active)
    assert torch.allclose(t["recon"], t_paper["recon"], rtol=1e-6)  # the clamped path unchanged
    (t["recon"] + t["kl"] + t["edit_recon"]).backward()
    got = {n: p.grad.clone() for n, p in model.named_parameters()}
    # the written-out edit: the active group each image's own, every other latent its partner's
    model.zero_grad()
    mu, _ = model.encode(x)
    rows = torch.tensor([0, 2, 4])
    code = torch.where(model.clamp_mask(active), mu[partner[rows]], mu[rows])
    edit = F.binary_cross_entropy_with_logits(model.decoder(code), x[rows], reduction="sum") / len(rows)
    assert torch.allclose(t["edit_recon"], edit.detach(), rtol=1e-5)
    edit.backward()
    for n, p in model.named_parameters():
        assert torch.allclose(got[n], paper[n] + p.grad, rtol=1e-4, atol=1e-3), n  # conv biases under GroupNorm: ~0
    assert any(p.grad.abs().sum() > 0 for n, p in model.named_parameters() if n.startswith("encoder"))
    # no image with another partner: the term is there and zero
    alone = model(x, active=active, invariance=lam, eps=eps, partner=torch.arange(6))
    assert loss_terms(model, alone, x, active)["edit_recon"].item() == 0.0


def test_encoder_filters_widen_the_encoder_only():
    base = ModelConfig(resolution=16, filters=(4, 4, 4), latent=8)
    wide = ModelConfig(resolution=16, filters=(4, 4, 4), encoder_filters=(16, 8, 8), latent=8).validate()
    convs = [m for m in DCIGN(wide).encoder.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [16, 8, 8]
    assert DCIGN(wide).encoder.fc.in_features == 8 * wide.feature_size**2
    # The decoder is the one of `filters`, parameter for parameter.
    assert {k: v.shape for k, v in DCIGN(wide).decoder.state_dict().items()} == {
        k: v.shape for k, v in DCIGN(base).decoder.state_dict().items()
    }
    # Empty: the encoder of `filters`; a config from before the option (no key) reads as empty.
    assert base.encoder_widths == (4, 4, 4)
    d = wide.to_dict()
    assert ModelConfig.from_dict(d) == wide
    del d["encoder_filters"]
    assert ModelConfig.from_dict(d).encoder_filters == ()
