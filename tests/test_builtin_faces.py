"""Renderer of the built-in domain: determinism, ranges, masks, prior, input validation."""

import numpy as np
import pytest

from interp.builtin import FACTOR_NAMES, FACTORS, PARTS, images_to_tensor, render, render_torch, sample_factors

P = {name: i for i, name in enumerate(PARTS)}


def _one(**over):
    f = {k: v[:1].copy() for k, v in sample_factors(1, 5).items()}
    f.update({"smile": np.array([0.5]), "age": np.array([0.3]), "glasses": np.array([0]), "yaw": np.array([0.0]),
              "eye_open": np.array([0.8]), "light": np.array([0.0]), "hair_length": np.array([0.5])})
    for k, v in over.items():
        f[k] = np.asarray(v, dtype=np.float64).reshape(-1)
    n = max(len(v) for v in f.values())
    return {k: np.repeat(v, n) if len(v) == 1 else v for k, v in f.items()}


def test_sample_factors_deterministic_and_in_range():
    a, b, c = sample_factors(500, 1), sample_factors(500, 1), sample_factors(500, 2)
    assert set(a) == set(FACTOR_NAMES)
    for spec in FACTORS:
        assert np.array_equal(a[spec.name], b[spec.name])
        v = a[spec.name]
        assert v.shape == (500,)
        assert v.min() >= spec.low and v.max() <= spec.high
        if spec.kind != "continuous":
            assert set(np.unique(v)) == set(range(int(spec.high) + 1))
    assert not np.array_equal(a["smile"], c["smile"])


def test_prior_correlates_age_and_glasses():
    f = sample_factors(4000, 0)
    old, young = f["glasses"][f["age"] > 0.7].mean(), f["glasses"][f["age"] < 0.3].mean()
    assert old > young + 0.3


def test_render_deterministic_shapes_and_sizes():
    f = sample_factors(6, 3)
    im, pa = render(f)
    im2, pa2 = render(f)
    assert im.shape == (6, 64, 64, 3) and im.dtype == np.uint8
    assert pa.shape == (6, 64, 64) and pa.dtype == np.uint8
    assert np.array_equal(im, im2) and np.array_equal(pa, pa2)
    assert pa.max() < len(PARTS)
    im128, pa128 = render(f, size=128)
    assert im128.shape == (6, 128, 128, 3) and pa128.shape == (6, 128, 128)
    # the torch path gives the same pixels
    x, pt = render_torch(f)
    assert x.shape == (6, 3, 64, 64) and x.min() >= -1 and x.max() <= 1
    assert np.abs(images_to_tensor(im).numpy() - x.numpy()).max() < 1.5 / 127.5
    assert np.array_equal(pt.numpy(), pa)
    # images are not flat: shading gives many distinct skin values
    skin = im[0][pa[0] == P["skin"]]
    assert len(np.unique(skin.reshape(-1, 3), axis=0)) > 50


def test_masks_agree_with_factors():
    f = _one(glasses=[0, 1, 0, 1], hair_length=[0.0, 0.0, 1.0, 1.0])
    im, pa = render(f)
    has_glasses = (pa == P["glasses"]).any(axis=(1, 2))
    assert has_glasses.tolist() == [False, True, False, True]
    assert not np.array_equal(im[0], im[1])
    hair = (pa == P["hair"]).sum(axis=(1, 2))
    assert hair[2] > hair[0] + 100
    for k in ("background", "skin", "hair", "eyes", "eyebrows", "mouth", "clothes"):
        assert (pa == P[k]).any(axis=(1, 2)).all(), k
    _, closed = render(_one(eye_open=[0.0, 1.0]))
    eyes = (closed == P["eyes"]).sum(axis=(1, 2))
    assert eyes[0] == 0 and eyes[1] > 20


def test_factors_move_what_they_say():
    _, pa = render(_one(yaw=[-1.0, 1.0]))
    cx = [(np.where(pa[i] == P["eyes"])[1]).mean() for i in range(2)]
    assert cx[1] > cx[0] + 3                          # turned right: features move right
    im, pa = render(_one(light=[-1.0, 1.0]))
    skin = pa == P["skin"]
    left = [im[i][:, :32][skin[i][:, :32]].mean() for i in range(2)]
    right = [im[i][:, 32:][skin[i][:, 32:]].mean() for i in range(2)]
    assert left[0] > right[0] and right[1] > left[1]  # lit side is brighter
    im, pa = render(_one(smile=[-1.0, 1.0]))
    mouth = [(pa[i] == P["mouth"]).sum() for i in range(2)]
    assert mouth[1] > mouth[0]                        # broad smile opens the mouth


@pytest.mark.parametrize("bad, msg", [
    (lambda f: f.pop("smile"), "missing"),
    (lambda f: f.__setitem__("smiles", f["smile"]), "unknown"),
    (lambda f: f.__setitem__("age", f["age"] + 2.0), r"\[0.0, 1.0\]"),
    (lambda f: f.__setitem__("glasses", np.full(4, 0.5)), r"\[0, 1\]"),
    (lambda f: f.__setitem__("hair_color", np.full(4, 7)), "blond"),
    (lambda f: f.__setitem__("yaw", f["yaw"][:2]), "same length"),
    (lambda f: f.__setitem__("light", f["light"].reshape(2, 2)), "1-D"),
    (lambda f: f.__setitem__("skin_tone", np.full(4, np.nan)), "NaN"),
])
def test_bad_factors_raise_clear_errors(bad, msg):
    f = sample_factors(4, 0)
    bad(f)
    with pytest.raises(ValueError, match=msg):
        render(f)


def test_bad_size_and_n():
    with pytest.raises(ValueError, match="size"):
        render(sample_factors(2, 0), size=3)
    with pytest.raises(ValueError, match="non-negative"):
        sample_factors(-1, 0)
    with pytest.raises(ValueError, match=r"\[N, H, W, 3\]"):
        images_to_tensor(np.zeros((2, 3, 8, 8), np.uint8))
