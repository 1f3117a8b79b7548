"""Shipped judges of the built-in domain: load through the public functions, reach the targets
(loosely, on a small held-out batch), behave as documented, reject bad input."""

import numpy as np
import pytest
import torch
from PIL import Image

from interp.builtin import (FACTORS, PARTS, images_to_tensor, load_clip, load_predictor, load_segmenter,
                            render, sample_factors)
from interp.builtin.common import ASSETS, EVAL_SEED
from interp.builtin.evaluate import eval_clip, eval_predictor, eval_segmenter, r2_score

N = 192


@pytest.fixture(scope="module")
def heldout():
    f = sample_factors(N, EVAL_SEED + 1)
    im, pa = render(f)
    return f, im, images_to_tensor(im), torch.from_numpy(pa).long()


def test_weight_files_are_small_safetensors():
    for name in ("predictor", "segmenter", "clip"):
        path = ASSETS / f"{name}.safetensors"
        assert path.exists() and path.stat().st_size <= 10 * 2**20, path
    assert (ASSETS / "predictor.json").exists() and (ASSETS / "segmenter.json").exists()


def test_predictor_targets_and_interface(heldout):
    f, _, x, _ = heldout
    P = load_predictor()
    assert load_predictor() is P and load_predictor("cpu") is P
    m = eval_predictor(P, x, f)
    for spec in FACTORS:
        if spec.kind == "continuous":
            assert m[f"r2/{spec.name}"] > 0.85, (spec.name, m)
        elif spec.kind == "binary":
            assert m[f"accuracy/{spec.name}"] > 0.9, (spec.name, m)
    out = P(x[:4])
    assert set(out) == {s.name for s in FACTORS}
    assert out["glasses"].shape == (4,) and ((out["glasses"] >= 0) & (out["glasses"] <= 1)).all()
    assert out["hair_color"].shape == (4, 4) and torch.allclose(out["hair_color"].sum(1), torch.ones(4))
    feats = P.features(x[:4])
    assert feats.ndim == 2 and feats.shape[0] == 4 and feats.shape[1] == P.config.feature_dim
    # differentiable w.r.t. the image
    xi = x[:2].clone().requires_grad_(True)
    P(xi)["smile"].sum().backward()
    assert xi.grad is not None and xi.grad.abs().sum() > 0
    # other square sizes are resized inside
    x128 = torch.nn.functional.interpolate(x[:8], size=128, mode="bilinear", align_corners=False)
    assert r2_score(P(x128)["age"].detach().numpy(), f["age"][:8]) > 0.5


def test_segmenter_targets_and_interface(heldout):
    _, _, x, parts = heldout
    S = load_segmenter()
    m = eval_segmenter(S, x[:64], parts[:64])
    assert m["mean_iou"] > 0.8, m
    logits = S(x[:2])
    assert logits.shape == (2, len(PARTS), 64, 64)
    assert S.segment(torch.nn.functional.interpolate(x[:2], size=128)).shape == (2, 128, 128)


def test_clip_targets_and_open_clip_interface(heldout):
    f, im, x, _ = heldout
    model, preprocess, tokenizer = load_clip()
    assert load_clip()[0] is model
    m = eval_clip(model, tokenizer, x, f)
    assert m["zero_shot_accuracy/glasses"] > 0.8, m
    for name in ("smile", "age", "hair_length", "yaw", "light"):
        assert m[f"spearman/{name}"] > 0.6, (name, m)
    # the PIL path of open_clip's own preprocess agrees with the tensor path
    from interp.builtin.clip import clip_image_input
    a = preprocess(Image.fromarray(im[0])).unsqueeze(0)
    b = clip_image_input(x[:1])
    assert torch.allclose(a, b, atol=0.02)
    with torch.no_grad():
        e = model.encode_image(a)
        t = model.encode_text(tokenizer(["a smiling face with glasses"]))
    assert e.shape == t.shape


@pytest.mark.parametrize("bad, msg", [
    (torch.zeros(2, 64, 64), r"\[N, 3, H, W\]"),
    (torch.zeros(2, 1, 64, 64), r"\[N, 3, H, W\]"),
    (torch.zeros(2, 3, 64, 32), "square"),
    (torch.zeros(2, 3, 64, 64, dtype=torch.uint8), "floating point"),
    (np.zeros((2, 3, 64, 64), np.float32), "torch.Tensor"),
])
def test_judges_reject_bad_images(bad, msg):
    for model in (load_predictor(), load_segmenter()):
        with pytest.raises(ValueError, match=msg):
            model(bad)
