"""InterFaceGAN: planted attributes recovered, conditioning, verification, export, caching, bad input."""
from __future__ import annotations

import math

import pytest
import torch

from interp.edit import DirectionEdit, synthesize
from interp.methods import interfacegan as ifg


class PlantedScorer:
    """Linear attributes of w planted by construction: score = ws[:, 0] @ v (no images needed)."""

    needs_images = False

    def __init__(self, vectors: dict[str, torch.Tensor]):
        self.vectors = vectors
        self.attributes = tuple(ifg.AttributeSpec(name) for name in vectors)
        self.id = "planted:" + ",".join(f"{k}{v.sum().item():.6f}" for k, v in vectors.items())

    def __call__(self, images, ws):
        return {k: ws[:, 0] @ v.to(ws) for k, v in self.vectors.items()}


class BrightnessScorer:
    """An image scorer: mean brightness (continuous) and 'bright' (binary probability)."""

    needs_images = True
    id = "brightness:1"
    attributes = (ifg.AttributeSpec("brightness"), ifg.AttributeSpec("bright", "binary"))

    def __call__(self, images, ws):
        b = images.mean(dim=(1, 2, 3))
        return {"brightness": b, "bright": torch.sigmoid(20 * b)}


def _unit(dim: int, seed: int) -> torch.Tensor:
    v = torch.randn(dim, generator=torch.Generator().manual_seed(seed))
    return v / v.norm()


@pytest.fixture(scope="module")
def planted(tiny_generator):
    G = tiny_generator
    v, u = _unit(G.w_dim, 1), _unit(G.w_dim, 2)
    scorer = PlantedScorer({"planted": v, "other": u})
    samples = ifg.score_samples(G, scorer, 2000, seed=0, space="w", cache=False)
    return G, scorer, samples, v, u


def test_planted_attribute_is_recovered(planted):
    G, scorer, samples, v, u = planted
    assert samples.codes.shape == (2000, G.w_dim) and samples.attributes == ("planted", "other")
    # In this anisotropic W the raw, weakly regularised SVM (InterFaceGAN's) recovers a planted normal from
    # thick classes (top vs bottom half); whitened, a tenth per side suffices.
    b = ifg.train_boundary(samples, "planted", ratio=0.5, C=1.0)
    assert float(b.normal @ v) > 0.99
    assert b.val_accuracy >= 0.95
    assert (b.n_train, b.n_val, b.n_remaining) == (1400, 600, 0) and math.isnan(b.remaining_accuracy)
    white = ifg.train_boundary(samples, "planted", ratio=0.1, C=1.0, whiten=True)
    assert float(white.normal @ v) > 0.99 and white.val_accuracy >= 0.95
    # the boundary separates by its decision value, and its edit is a W edit in std units
    assert float((b.decision(samples.codes) > 0).float().mean()) == pytest.approx(0.5, abs=0.1)
    e = b.edit(2.0)
    assert isinstance(e, DirectionEdit) and e.space == "w" and e.method == "interfacegan" and e.name == "planted"
    assert e.layers == tuple(range(G.num_ws)) and e.std == pytest.approx(b.std)
    proj = (samples.codes - samples.codes.mean(0)) @ b.normal
    assert b.std == pytest.approx(float(proj.std()), rel=1e-4)
    z = G.sample_z(2, 5)
    assert not torch.equal(synthesize(G, z, [e]), synthesize(G, z, []))
    assert torch.equal(synthesize(G, z, [b.edit(0.0)]), synthesize(G, z, []))


def test_wplus_and_s_spaces(planted):
    G, scorer, samples, v, _ = planted
    rows = (0, 1)
    wp = samples.in_space(G, "w+", rows)
    assert wp.codes.shape == (2000, 2 * G.w_dim) and torch.equal(wp.scores["planted"], samples.scores["planted"])
    b = ifg.train_boundary(wp, "planted", ratio=0.5, C=1.0)
    assert float(b.edit_direction @ v) > 0.99                              # the W boundary, repeated over the rows
    e = b.edit(1.0)
    assert e.space == "w" and e.layers == rows
    with pytest.raises(ValueError, match="only w boundaries"):
        b.edit(1.0, layers=[3])
    s = samples.in_space(G, "s", rows)
    bs = ifg.train_boundary(s, "planted", ratio=0.1)
    assert bs.dim == s.dim and bs.edit(1.0).space == "s" and bs.val_accuracy >= 0.9
    with pytest.raises(ValueError, match="z boundary moves every ws row"):
        samples.in_space(G, "z", rows)
    with pytest.raises(ValueError, match="allowed: z, w, w\\+, s"):
        samples.in_space(G, "x")


def test_condition_is_orthogonal_to_every_condition():
    p = torch.randn(20, generator=torch.Generator().manual_seed(0))
    conds = torch.randn(5, 20, generator=torch.Generator().manual_seed(1))
    conds = torch.cat([conds, conds[:2].sum(0, keepdim=True)])           # a dependent condition is fine
    d = ifg.condition(p, conds)
    assert float(d.norm()) == pytest.approx(1.0, abs=1e-6)
    assert (conds @ d).abs().max() < 1e-5
    assert float(d @ p) > 0
    assert torch.allclose(ifg.condition(p, []), p / p.norm())
    with pytest.raises(ValueError, match="span"):
        ifg.condition(0.3 * conds[0] - 2 * conds[3], conds)
    with pytest.raises(ValueError, match="shape"):
        ifg.condition(p, [torch.randn(7)])
    with pytest.raises(ValueError, match="non-zero"):
        ifg.condition(p, [torch.zeros(20)])


def test_conditioned_boundary_keeps_strength_units(planted):
    G, scorer, samples, v, u = planted
    b, o = ifg.train_boundary(samples, "planted", 0.1), ifg.train_boundary(samples, "other", 0.1)
    c = b.conditioned([o])
    assert abs(float(c.normal @ o.normal)) < 1e-5 and c.std == b.std
    assert c.label == "planted (other fixed)" and c.edit(1.0).name == "planted (other fixed)"
    with pytest.raises(ValueError, match="span"):
        b.conditioned([o, ifg.Boundary("copy", "w", b.rows, b.normal, 0.0, 1.0)])
    with pytest.raises(ValueError, match="while editing it"):
        b.conditioned([b])


def test_verify_planted_reliable_random_unreliable(planted):
    G, scorer, samples, v, u = planted
    b = ifg.train_boundary(samples, "planted")
    good = ifg.verify(G, b, scorer, n=16, strengths=(-2, -1, 1, 2))
    assert good.reliable and good.monotonic and good.strengths == (-2.0, -1.0, 0.0, 1.0, 2.0)
    # score = w @ v: one unit of strength moves w by std along the normal, the score by std * cos(normal, v)
    assert good.effect["planted"] == pytest.approx(b.std * float(b.normal @ v), rel=1e-3)
    assert good.effect_std["planted"] > 0.9
    assert float(good.mean["planted"][2]) == 0.0 and set(good.mean) == {"planted", "other"}
    r = torch.randn(G.w_dim, generator=torch.Generator().manual_seed(7))
    r = r - (r @ v) * v                                                    # a random direction carrying no 'planted'
    bad = ifg.verify(G, DirectionEdit(r, "w", b.rows, 1.0, b.std, name="random"), scorer, n=16,
                     strengths=(-2, 2), attribute="planted")
    assert not bad.reliable and abs(bad.effect_std["planted"]) < 1e-3
    assert "UNRELIABLE" in bad.summary() and "reliable" in good.summary()
    rows = good.records()
    assert {r["attribute"] for r in rows} == {"planted", "other"} and len(rows) == 10
    with pytest.raises(ValueError, match="at least two"):
        ifg.verify(G, b, scorer, strengths=(0, 1))
    with pytest.raises(ValueError, match="allowed: planted, other"):
        ifg.verify(G, b, scorer, attribute="age")


def test_image_scorer_precisions_and_cache(tiny_generator, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path))
    G, scorer = tiny_generator, BrightnessScorer()
    seen = []
    exact = ifg.score_samples(G, scorer, 48, seed=3, batch=16, precision="float32",
                              progress=lambda f, t: seen.append((f, t)))
    assert not exact.cached and [round(f, 3) for f, _ in seen] == [0.333, 0.667, 1.0] and "48" in seen[-1][1]
    again = ifg.score_samples(G, scorer, 48, seed=3, batch=16, precision="float32", space="s")
    assert again.cached and torch.equal(again.scores["brightness"], exact.scores["brightness"])
    assert again.codes.shape[1] > G.w_dim                                 # S codes, same scores
    ref = G.synthesis(G.mapping(G.sample_z(48, 3))).mean(dim=(1, 2, 3))
    assert torch.allclose(exact.scores["brightness"], ref, atol=1e-5)
    fast = ifg.score_samples(G, scorer, 48, seed=3, precision="bfloat16", cache=False)
    assert torch.corrcoef(torch.stack([fast.scores["brightness"], ref]))[0, 1] > 0.98
    assert ifg.estimate_seconds(G, scorer, 1000, batch=16, precision="float32") > 0
    with pytest.raises(ValueError, match="allowed: auto, float32, bfloat16"):
        ifg.score_samples(G, scorer, 48, precision="half")


def test_bad_input_is_refused_clearly(planted):
    G, scorer, samples, _, _ = planted
    for attribute in (None, ""):
        with pytest.raises(ValueError, match="choose an attribute; available: planted, other"):
            ifg.train_boundary(samples, attribute)
    with pytest.raises(ValueError, match="unknown attribute 'age'; available: planted, other"):
        ifg.train_boundary(samples, "age")
    for ratio in (0, -0.1, 0.6, 1.0):
        with pytest.raises(ValueError, match=r"ratio must be within \(0, 0.5\]"):
            ifg.train_boundary(samples, "planted", ratio=ratio)
    small = ifg.score_samples(G, scorer, 100, seed=0, cache=False)
    with pytest.raises(ValueError, match="100 samples with ratio 0.02 give 2 samples per side.*n >= 500"):
        ifg.train_boundary(small, "planted", ratio=0.02)
    with pytest.raises(ValueError, match="integer >= 2"):
        ifg.score_samples(G, scorer, 1, cache=False)
    with pytest.raises(TypeError, match="Scorer protocol"):
        ifg.score_samples(G, object(), 10, cache=False)
    with pytest.raises(ValueError, match="choose at least one attribute"):
        ifg.train_boundaries(samples, [], cache=False)


def test_prompt_pairs_and_clip_scorer():
    pairs = ifg.parse_prompt_pairs("glasses: a face with glasses | a face without glasses\n# note\n\n"
                                   "an old face | a young face")
    assert pairs == {"glasses": ("a face with glasses", "a face without glasses"),
                     "an old face": ("an old face", "a young face")}
    assert ifg.parse_prompt_pairs(ifg.format_prompt_pairs(pairs)) == pairs
    for text in ("glasses: | a face without glasses", "glasses: a face with glasses | ", " | "):
        with pytest.raises(ValueError, match="empty on one side"):
            ifg.parse_prompt_pairs(text)
    for text in ("", "   \n# only a comment"):
        with pytest.raises(ValueError, match="no prompt pairs"):
            ifg.parse_prompt_pairs(text)
    with pytest.raises(ValueError, match="write 'attribute: a positive prompt | its opposite'"):
        ifg.parse_prompt_pairs("glasses: a face with glasses")
    with pytest.raises(ValueError, match="two prompt pairs"):
        ifg.parse_prompt_pairs(["a: x | y", "a: z | w"])
    with pytest.raises(ValueError, match="load_paired_clip"):
        ifg.ClipPairScorer(None, pairs)
    assert "glasses" in ifg.default_prompt_pairs("faces64")

    class FakeClip:                                                        # embeddings: mean colour channels
        name = "fake"
        model = torch.nn.Linear(3, 3)

        def encode_text(self, texts):
            return torch.nn.functional.normalize(torch.tensor([[1.0, 0, 0] if t.startswith("with ") else [0, 1.0, 0]
                                                               for t in texts]), dim=-1)

        def encode_images(self, images):
            return torch.nn.functional.normalize(images.mean(dim=(2, 3)) + 2, dim=-1)

    clip = ifg.ClipPairScorer(FakeClip(), {"glasses": ("with glasses", "without glasses")})
    images = torch.zeros(2, 3, 8, 8)
    images[0, 0] = 1.0                                                     # a red image scores higher
    out = clip(images, torch.zeros(2, 1, 4))
    assert out["glasses"][0] > out["glasses"][1] and clip.id.startswith("clip:fake:")


def test_export_import_and_entanglement(planted, tmp_path):
    G, scorer, samples, v, u = planted
    bs = ifg.train_boundaries(samples, ratio=0.1, cache=False)
    path = ifg.save_boundaries(bs, tmp_path / "b.safetensors", model_id="tiny")
    back = ifg.load_boundaries(path, expected_hash=samples.model_hash)
    assert [b.attribute for b in back] == ["planted", "other"]
    for a, b in zip(bs, back):
        assert torch.allclose(a.normal, b.normal) and a.val_accuracy == b.val_accuracy and a.std == pytest.approx(b.std)
        assert b.edit(1.0).delta.allclose(a.edit(1.0).delta)
    from interp.directions import DirectionFileError, load_directions

    ds = load_directions(path)
    assert ds.method == "interfacegan" and ds.names == ("planted", "other") and ds.space == "w"
    assert ds.edits([1.0])[0].delta.allclose(bs[0].edit(1.0).delta)
    with pytest.raises(DirectionFileError, match="weights"):
        ifg.load_boundaries(path, expected_hash="0" * 16)
    wp = ifg.train_boundary(samples.in_space(G, "w+", (2, 3)), "planted", 0.1)
    back = ifg.load_boundaries(ifg.save_boundaries([wp], tmp_path / "wp.safetensors"))[0]
    assert back.space == "w+" and back.rows == (2, 3) and torch.allclose(back.normal, wp.normal, atol=1e-3)
    with pytest.raises(ValueError, match="one space"):
        ifg.boundaries_to_directions([bs[0], wp])
    ent = ifg.entanglement(bs)
    assert ent.cosine.shape == (2, 2) and torch.allclose(ent.cosine.diagonal(), torch.ones(2))
    assert ent.cosine[0, 1] == pytest.approx(float(bs[0].normal @ bs[1].normal), abs=1e-6)
    with pytest.raises(ValueError, match="one space"):
        ifg.entanglement([bs[0], wp])


def test_train_boundaries_cache(planted, tmp_path, monkeypatch):
    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path))
    _, _, samples, _, _ = planted
    first = ifg.train_boundaries(samples, ["planted"], ratio=0.1)
    assert list((tmp_path / ifg.BOUNDARY_CACHE).glob("*.safetensors"))
    again = ifg.train_boundaries(samples, ["planted"], ratio=0.1)
    assert torch.equal(first[0].normal, again[0].normal) and first[0].to_dict() == again[0].to_dict()


class PlantedClasses:
    """A categorical attribute of w: softmax over three planted linear logits."""

    needs_images = False
    id = "planted-classes:1"
    attributes = (ifg.AttributeSpec("shape", "categorical", ("round", "square", "long")),)

    def __init__(self, vectors: torch.Tensor):
        self.vectors = vectors                                             # [3, w_dim]

    def __call__(self, images, ws):
        return {"shape": (4 * ws[:, 0] @ self.vectors.T).softmax(-1)}    # [N, 3]


def test_categorical_one_vs_rest_and_predictor_columns(tiny_generator):
    G = tiny_generator
    vectors = torch.stack([_unit(G.w_dim, s) for s in (11, 12, 13)])
    samples = ifg.score_samples(G, PlantedClasses(vectors), 1000, seed=0, cache=False)
    assert samples.attributes == ("shape=round", "shape=square", "shape=long")
    assert samples.kinds["shape=long"] == "categorical"
    assert torch.allclose(sum(samples.scores.values()), torch.ones(1000), atol=1e-5)
    b = ifg.train_boundary(samples, "shape=square", ratio=0.1)
    assert b.kind == "categorical" and b.val_accuracy >= 0.9
    # moving along it raises that class's logit relative to the others
    gain = b.normal @ (vectors[1] - vectors[[0, 2]]).T
    assert (gain > 0).all()
    with pytest.raises(ValueError, match="unknown attribute 'shape'; available: shape=round"):
        ifg.train_boundary(samples, "shape")

    from interp.builtin import AttributePredictor, FACTOR_NAMES

    torch.manual_seed(0)
    scorer = ifg.PredictorScorer(AttributePredictor().eval())             # random weights: the plumbing only
    s = ifg.score_samples(G, scorer, 8, seed=0, batch=4, precision="float32", cache=False)
    assert "hair_color=blond" in s.attributes and "glasses" in s.attributes and "hair_color" not in s.attributes
    assert len(s.attributes) == len(FACTOR_NAMES) - 1 + 4 and s.kinds["glasses"] == "binary"
    assert scorer.id.startswith("predictor:")
