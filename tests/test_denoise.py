"""The C denoising loop (_engine.denoise) against diffusers' QwenImagePipeline loop (its
transformer + FlowMatchEulerDiscreteScheduler, torch fp32), with and without true CFG; the
per-step x0 callback; cancellation from the callback."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import rel_err
from mmdit_util import TINY, write_random_mmdit

import edge_server
from edge_server import _engine
from edge_server.scheduler import LIGHTNING, sigmas_for


def unpack(packed: np.ndarray, c: int, gh: int, gw: int) -> np.ndarray:
    """(gh*gw, c*4) packed -> (c, 2gh, 2gw), diffusers' _unpack_latents."""
    x = packed.reshape(gh, gw, c, 2, 2).transpose(2, 0, 3, 1, 4)
    return x.reshape(c, 2 * gh, 2 * gw)


def reference_loop(folder, lat, txt, neg, scale, sigmas, hpx, wpx):
    torch = pytest.importorskip("torch")
    diffusers = pytest.importorskip("diffusers")
    m = diffusers.QwenImageTransformer2DModel.from_pretrained(folder / "transformer").eval()
    gh, gw = hpx // 16, wpx // 16
    x = torch.from_numpy(lat)[None]
    x0s = []
    with torch.no_grad():
        for i in range(len(sigmas) - 1):
            t = torch.tensor([sigmas[i]], dtype=torch.float32) * 1000

            def fwd(emb, t=t, x=x):
                return m(
                    hidden_states=x,
                    timestep=t / 1000,
                    encoder_hidden_states=torch.from_numpy(emb)[None],
                    img_shapes=[[(1, gh, gw)]],
                    return_dict=False,
                )[0]

            v = fwd(txt)
            if neg is not None and scale > 1:
                vn = fwd(neg)
                comb = vn + scale * (v - vn)
                v = comb * (
                    torch.norm(v, dim=-1, keepdim=True) / torch.norm(comb, dim=-1, keepdim=True)
                )
            x0s.append(unpack((x - float(sigmas[i]) * v)[0].numpy(), 4, gh, gw))
            dt = torch.tensor(sigmas[i + 1], dtype=torch.float32) - torch.tensor(
                sigmas[i], dtype=torch.float32
            )
            x = x + dt * v
    return x[0].numpy(), x0s


@pytest.mark.parametrize("steps", [4, 8])
@pytest.mark.parametrize("cfg", [False, True])
def test_denoise_matches_diffusers_loop(tmp_path, steps, cfg):
    pytest.importorskip("diffusers")
    folder = write_random_mmdit(tmp_path / "m", TINY, seed=5)
    hpx, wpx = 64, 48
    rng = np.random.default_rng(steps)
    lat = _engine.randn(11, ((hpx // 16) * (wpx // 16), 16))
    txt = rng.standard_normal((6, 16)).astype(np.float32)
    neg = rng.standard_normal((3, 16)).astype(np.float32) if cfg else None
    sigmas = sigmas_for(LIGHTNING, steps, lat.shape[0])
    ref, ref_x0 = reference_loop(folder, lat, txt, neg, 4.0, sigmas, hpx, wpx)
    model = edge_server.load_model(folder)
    seen = []
    out = _engine.denoise(
        model._model,
        lat,
        txt,
        sigmas,
        hpx,
        wpx,
        neg_txt=neg,
        cfg_scale=4.0,
        on_step=lambda s, n, sig, x0: seen.append((s, n, sig, x0)),
    )
    assert rel_err(out, ref) < 1e-4
    assert [s[0] for s in seen] == list(range(1, steps + 1)) and all(s[1] == steps for s in seen)
    for (s, _, sig, x0), rx0 in zip(seen, ref_x0, strict=True):
        assert sig == pytest.approx(float(sigmas[s - 1]))
        assert x0.shape == (4, hpx // 8, wpx // 8)
        assert rel_err(x0, rx0) < 1e-4
    # the last step's x0 is the final latent (sigma_next = 0)
    np.testing.assert_allclose(unpack(out, 4, hpx // 16, wpx // 16), seen[-1][3], atol=1e-5)


def test_callback_can_stop_and_errors_propagate(tmp_path):
    folder = write_random_mmdit(tmp_path / "m", TINY, seed=5)
    model = edge_server.load_model(folder)
    lat = _engine.randn(1, (12, 16))
    txt = np.ones((2, 16), np.float32)
    sig = sigmas_for(LIGHTNING, 4, 12)
    with pytest.raises(_engine.Cancelled, match="after step 2"):
        _engine.denoise(model._model, lat, txt, sig, 48, 64, on_step=lambda s, *a: s == 2)

    def boom(*a):
        raise KeyError("from the callback")

    with pytest.raises(KeyError, match="from the callback"):
        _engine.denoise(model._model, lat, txt, sig, 48, 64, on_step=boom)
    tok = _engine.CancelToken()
    tok.cancel()
    with pytest.raises(_engine.Cancelled):
        _engine.denoise(model._model, lat, txt, sig, 48, 64, cancel=tok)
    with pytest.raises(_engine.InvalidArgument, match="sigma"):
        _engine.denoise(model._model, lat, txt, np.array([1.0, 2.0], np.float32), 48, 64)
