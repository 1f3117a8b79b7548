"""Ground truth: effect matrix, purity, planted pure directions, Z/W/S comparison, CLIP naming and agreement."""
from __future__ import annotations

import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from interp.builtin.faces import FACTOR_NAMES, FACTORS
from interp.methods import effects, naming
from interp.methods import interfacegan as ifg
from interp.edit import DirectionEdit

CONTINUOUS = [f.name for f in FACTORS if f.kind == "continuous"]


def _predictor(trained_only: bool = False):
    """The shipped predictor; else (unless trained_only) a seeded random-init one: the maths is the same."""
    from interp.builtin import AttributePredictor, load_predictor

    try:
        return load_predictor()
    except FileNotFoundError as exc:
        if trained_only:
            pytest.skip(f"the built-in attribute predictor is not trained yet ({exc})")
        torch.manual_seed(0)
        model = AttributePredictor().eval()
        for p in model.parameters():
            p.requires_grad_(False)
        return model


def test_effect_matrix_properties_and_agreement():
    m = torch.zeros(3, len(FACTOR_NAMES))
    m[0, FACTOR_NAMES.index("smile")] = 0.3
    m[0, FACTOR_NAMES.index("age")] = -0.1
    m[1, FACTOR_NAMES.index("yaw")] = -0.2
    m[2, FACTOR_NAMES.index("hair_color")] = 0.04
    eff = effects.EffectMatrix(m, FACTOR_NAMES, ("#0", "#1", "#2"))
    assert eff.dominant == ["smile", "yaw", "hair_color"]
    assert torch.allclose(eff.purity, torch.tensor([0.75, 1.0, 1.0]))
    names = [naming.DirectionName(0, "a smiling face", "a smiling face | a frowning face", +1, 0.3, 0.9),
             naming.DirectionName(1, "a face turned to the right", "", +1, 0.2, 0.8),   # right factor, wrong sign
             naming.DirectionName(2, "a wide face", "", +1, 0.1, 0.5)]                  # wrong factor
    agree = effects.clip_agreement(names, eff)
    assert agree["factor_agreement"] == pytest.approx(2 / 3) and agree["sign_agreement"] == pytest.approx(1 / 3)
    assert [p["agrees"] for p in agree["per_direction"]] == [True, True, False]
    assert agree["top2_agreement"] == pytest.approx(2 / 3)
    assert agree["n_measurable"] == 2 and agree["measurable_agreement"] == 1.0     # #2 moves hair by 0.04 only
    assert effects.clip_agreement(names, eff, min_response=0.01)["n_measurable"] == 3
    old = [naming.DirectionName(0, "an old face", "", +1, 0.3, 0.9)] + names[1:]    # age is #0's runner-up
    again = effects.clip_agreement(old, eff)
    assert again["factor_agreement"] == pytest.approx(1 / 3) and again["top2_agreement"] == pytest.approx(2 / 3)
    fig = effects.plot_effects(eff)
    assert len(fig.axes) >= 1


class _LinearFaces(torch.nn.Module):
    """A toy generator + predictor pair whose Jacobian is known by construction (no trained model needed).

    W has 12 dims; the "image" is w itself [N, 3, 2, 2]. The predictor reads: smile = w0 + w1, age = w1,
    glasses = w2, the other continuous factors w3 .. w9 (in FACTORS order), hair colour a constant; w10
    and w11 change nothing. So the direction that moves smile and no other factor is e0 (not the naive
    gradient e0 + e1), and the one for age is e1 - e0.
    """

    z_dim = w_dim = 12
    num_ws, img_resolution = 1, 2

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("w_avg", torch.zeros(self.w_dim))

    def sample_z(self, n: int, seed: int) -> torch.Tensor:
        return torch.randn(n, self.z_dim, generator=torch.Generator().manual_seed(seed))

    def mapping(self, z, truncation_psi=1.0, truncation_cutoff=None):
        return self.w_avg.lerp(z, truncation_psi)[:, None, :]             # [N, 1, w_dim]

    def synthesis(self, ws, noise_mode="const", cache=None):
        return ws[:, 0].reshape(-1, 3, 2, 2)                               # [N, 3, 2, 2]

    @staticmethod
    def predictor(images: torch.Tensor) -> dict[str, torch.Tensor]:
        x = images.flatten(1)                                              # [N, 12]
        out, column = {}, iter(range(3, 10))
        for f in FACTORS:
            span = f.high - f.low
            if f.name == "smile":
                out[f.name] = span * (x[:, 0] + x[:, 1])
            elif f.name == "age":
                out[f.name] = span * x[:, 1]
            elif f.name == "glasses":
                out[f.name] = x[:, 2]
            elif f.kind == "categorical":
                out[f.name] = torch.full((x.shape[0], len(f.categories)), 1 / len(f.categories))
            else:
                out[f.name] = span * x[:, next(column)]
        return out


class _LinearJudge:
    """The linear predictor above as an InterFaceGAN judge with a gradient."""

    id = "linear"
    attributes = tuple(ifg.AttributeSpec(f.name, f.kind, tuple(f.categories)) for f in FACTORS)

    def differentiable(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return _LinearFaces.predictor(images)


def test_gradient_directions_solve_a_known_jacobian(tmp_path):
    """The direction that moves one factor and no other, checked against a Jacobian known by construction
    (not against the predictor that made it); its measured effect is exactly that factor."""
    G, P = _LinearFaces(), _LinearFaces.predictor
    e = torch.eye(G.w_dim)
    smile_d, age_d, yaw_d = ifg.gradient_boundaries(G, _LinearJudge(), ["smile", "age", "yaw"], n=2)
    assert torch.allclose(smile_d.normal, e[0], atol=1e-5)                # not the naive gradient e0 + e1
    assert torch.allclose(age_d.normal, (e[1] - e[0]) / 2**0.5, atol=1e-5)
    assert torch.allclose(yaw_d.normal, e[4], atol=1e-5)
    assert smile_d.method == "gradient" and smile_d.edit(1.0).method == "gradient" and math.isnan(smile_d.val_accuracy)
    assert smile_d.std == pytest.approx(1.0, abs=0.1)                     # W codes ~ N(0, I) here
    held = age_d.conditioned([smile_d])                                  # already held: the same direction
    assert torch.equal(held.normal, age_d.normal) and held.label == "age (smile fixed)"
    back = ifg.load_boundaries(ifg.save_boundaries([smile_d, age_d], tmp_path / "g.safetensors"))
    assert [b.method for b in back] == ["gradient"] * 2 and torch.allclose(back[1].normal, age_d.normal)
    # measured on the same linear model, the effect per std is std * J d: pure smile for e0, while the
    # naive gradient e0 + e1 also moves age (purity 2/3)
    smile, age = FACTOR_NAMES.index("smile"), FACTOR_NAMES.index("age")
    edits = [DirectionEdit(e[0], "w", (0,), 0.5, std=2.0), DirectionEdit(e[0] + e[1], "w", (0,), 0.5, std=2.0)]
    eff = effects.effect_matrix(G, P, edits, n_samples=3, seed=0, truncation_psi=1.0)
    expected = torch.zeros(2, len(FACTOR_NAMES))
    expected[0, smile] = 2.0
    expected[1, smile], expected[1, age] = 2.0 * 2**0.5, 2.0 / 2**0.5
    assert torch.allclose(eff.matrix, expected, atol=1e-5)
    assert eff.dominant == ["smile", "smile"] and torch.allclose(eff.purity, torch.tensor([1.0, 2 / 3]))
    with pytest.raises(ValueError, match="categorical"):
        ifg.gradient_boundaries(G, _LinearJudge(), ["hair_color=black"])
    with pytest.raises(ValueError, match="unknown attribute 'beard'"):
        ifg.gradient_boundaries(G, _LinearJudge(), ["beard"])
    with pytest.raises(ValueError, match="has no gradient"):
        ifg.gradient_boundaries(G, type("Scores", (), {"id": "ws", "attributes": ()})())


def test_compare_spaces_summaries(tiny_generator, tmp_path, monkeypatch):
    """GANSpace in z, w, s and SeFa in w, each measured and summarised: with planted effect matrices the
    summaries are exact, and each space is measured with its own directions."""
    import inspect

    from interp.edit import latent_dim, layer_rows
    from interp.methods import ganspace, sefa

    monkeypatch.setenv("INTERP_CACHE_DIR", str(tmp_path))
    G = tiny_generator

    def row(**responses):
        r = torch.zeros(len(FACTOR_NAMES))
        for name, value in responses.items():
            r[FACTOR_NAMES.index(name)] = value
        return r

    planted = [torch.stack([row(smile=0.3, age=0.1), row(smile=-0.2)]),             # purity .75, 1; 1 factor
               torch.stack([row(smile=0.3), row(yaw=0.3, age=-0.1)]),                # 1, .75; 2 factors
               torch.stack([row(age=0.1, smile=0.1, yaw=0.2), row(age=0.5)]),        # .5, 1; 2 factors
               torch.stack([row(yaw=0.2), row(yaw=-0.4)])]                           # 1, 1; 1 factor
    expected = [("z", 0.875, 1), ("w", 0.875, 2), ("s", 0.75, 2), ("sefa-w", 1.0, 1)]
    real, calls = effects.effect_matrix, []

    def fake(*args, **kwargs):
        calls.append(inspect.signature(real).bind(*args, **kwargs).arguments)   # called as the real one can be
        return effects.EffectMatrix(planted[len(calls) - 1], FACTOR_NAMES, calls[-1]["directions"].names)

    monkeypatch.setattr(effects, "effect_matrix", fake)
    predictor = object()
    out = effects.compare_spaces(G, predictor, k=2, n_pca=300, n_samples=4)

    assert [(s.space, s.mean_purity, s.distinct_factors) for s in out] == [
        (space, pytest.approx(purity), distinct) for space, purity, distinct in expected]
    for s, m in zip(out, planted):
        assert torch.equal(s.effects.matrix, m)
        d = s.to_dict()
        assert d["mean_purity"] == s.mean_purity and d["dominant"] == s.effects.dominant
        assert d["purity"] == [round(float(p), 4) for p in s.effects.purity]
    rows = tuple(layer_rows(G, "all"))
    assert [c["directions"].space for c in calls] == ["z", "w", "s", "w"]
    assert [c["directions"].method for c in calls] == ["ganspace"] * 3 + ["sefa"]
    for c in calls:
        ds = c["directions"]
        assert c["G"] is G and c["predictor"] is predictor and c["n_samples"] == 4
        assert ds.k == 2 and ds.layers == rows and ds.dim == latent_dim(G, ds.space, rows)
    for c, space in zip(calls, ("z", "w", "s")):                        # each space with its own PCA directions
        fitted = ganspace.fit(G, 300, 2, 0, space=space, layers="all")
        assert torch.allclose(c["directions"].directions, fitted.directions, atol=1e-6)
    assert torch.allclose(calls[3]["directions"].directions, sefa.directions(G, "all", 2)[0], atol=1e-6)


def _true_effects(G: effects.FactorAxisGenerator, edits, n_samples: int, seed: int) -> torch.Tensor:
    """The renderer's own answer [K, F]: w_i sets factor i to low + range * sigmoid(w_i), so the change per
    std, in units of the range, is the mean of (sigmoid(w + delta) - sigmoid(w - delta)) / (2 * strength)."""
    w = G.mapping(G.sample_z(n_samples, seed), truncation_psi=1.0)[:, 0]    # [n, w_dim]
    out = torch.zeros(len(edits), len(FACTOR_NAMES))
    for k, e in enumerate(edits):
        change = (torch.sigmoid(w + e.delta) - torch.sigmoid(w - e.delta)).mean(0) / (2 * e.strength)
        for i, name in enumerate(G.axes):
            out[k, FACTOR_NAMES.index(name)] = change[i]
    return out


def test_ground_truth_on_known_factors():
    """On a generator whose W axes are factors, the effect measured through the trained predictor is the
    renderer's true effect: single axes pure, planted mixtures with their planted purity."""
    G = effects.FactorAxisGenerator()
    P = _predictor(trained_only=True)

    def axis(name):
        return torch.eye(G.w_dim)[CONTINUOUS.index(name)]

    planted = {"smile": axis("smile"), "yaw": axis("yaw"), "background": axis("background"),
               "smile+age": 0.8 * axis("smile") + 0.6 * axis("age"),
               "yaw-background": 0.6 * axis("yaw") - 0.8 * axis("background")}
    edits = [DirectionEdit(d, "w", (0,), 0.5, name=n) for n, d in planted.items()]
    eff = effects.effect_matrix(G, P, edits, n_samples=6, seed=0, truncation_psi=1.0)
    truth = _true_effects(G, edits, n_samples=6, seed=0)
    assert eff.dominant == ["smile", "yaw", "background", "smile", "background"]
    assert (eff.matrix - truth).abs().max() < 0.02, (eff.matrix - truth).abs().max()
    true_purity = truth.abs().max(1).values / truth.abs().sum(1)            # 1, 1, 1, .58, .56
    assert (eff.purity - true_purity).abs().max() < 0.08                    # the judge's small leaks add up
    assert float(eff.purity[:3].min()) > 0.85 and float(eff.purity[3:].max()) < 0.65
    assert eff.matrix[3, FACTOR_NAMES.index("age")] > 0.1 and eff.matrix[4, FACTOR_NAMES.index("yaw")] > 0.1


def _random_clip():
    import open_clip

    from interp.builtin.clip import register

    torch.manual_seed(0)
    model, _, preprocess = open_clip.create_model_and_transforms(register(), pretrained=None)
    return naming.ClipScorer(model.eval(), preprocess, open_clip.get_tokenizer(register()), "random tiny CLIP")


def test_naming_mechanics_flip_with_the_direction(tiny_generator):
    from interp.directions import DirectionSet

    G = tiny_generator
    clip = _random_clip()
    d = torch.randn(2, G.w_dim, generator=torch.Generator().manual_seed(0))
    ds = DirectionSet.create(torch.cat([d, -d[:1]]), torch.ones(3), torch.ones(3), space="w",
                             layers=range(G.num_ws), method="test", model_id="tiny32", model_hash="x")
    vocab = naming.default_vocabulary("faces64")
    names = naming.name_directions(G, ds, clip, vocab, n_samples=4)
    assert len(names) == 3
    assert names[2].phrase == names[0].phrase and names[2].sign == -names[0].sign
    assert names[2].confidence == pytest.approx(names[0].confidence)
    assert all(0 <= n.confidence <= 1 and n.label[0] in "+-" for n in names)
    assert {n.phrase for n in names} <= {p.positive for p in naming.parse_vocabulary(vocab)}


def test_runner_up_names_tell_repeated_phrases_apart():
    phrases = naming.parse_vocabulary(["an old face | a young face", "a smiling face | a frowning face",
                                       "a face with black hair / a face with brown hair", "a wide face"])
    e = torch.eye(5)
    text_dirs = torch.stack([e[0], e[1], e[2], F.normalize(e[2] + e[3], dim=0), e[4]])   # brown ~ black hair
    deltas = torch.stack([e[0] + 0.5 * e[1], e[0] - 0.5 * e[1], e[0] + 0.4 * e[4], -e[0] + 0.4 * e[4],
                          e[2] + 0.3 * e[4]])[:, None]                   # [K, n = 1, E]
    names = naming.name_from_changes(deltas, text_dirs, phrases)
    assert [(n.phrase, n.sign) for n in names] == [("an old face", 1)] * 3 + [("an old face", -1),
                                                                             ("a face with black hair", 1)]
    assert [n.also for n in names] == ["a smiling face", "a frowning face", "a wide face", "not a wide face",
                                       "a wide face"]                   # not brown hair: the same attribute
    assert naming.distinct_phrases(names) == [
        "an old face and a smiling face", "an old face and a frowning face", "an old face and a wide face",
        "an old face", "a face with black hair"]                       # the sign tells #3 apart
    twice = [names[0], dataclasses.replace(names[0], index=7), names[4]]
    assert naming.distinct_phrases(twice) == ["an old face and a smiling face #0",
                                              "an old face and a smiling face #7", "a face with black hair"]
    pair = dataclasses.replace(names[4], runner_up="a face with long hair | a face with short hair", runner_sign=-1)
    single = dataclasses.replace(names[4], index=5, runner_up="a face with long hair", runner_sign=-1)
    assert naming.distinct_phrases([pair, single]) == ["a face with black hair and short hair",
                                                       "a face with black hair and not long hair"]
    old = naming.DirectionName(0, "a wide face", "a wide face", 1, 0.2, 0.5)    # a file without a runner-up
    assert old.also == "" and naming.distinct_phrases([old, old]) == ["a wide face #0"] * 2


def test_vocabulary_parsing_and_domains():
    ph = naming.parse_vocabulary("a smiling face | a frowning face\n\n# comment\na bald person\na bald person")
    assert [(p.positive, p.negative) for p in ph] == [("a smiling face", "a frowning face"), ("a bald person", None)]
    with pytest.raises(ValueError, match="vocabulary is empty"):
        naming.parse_vocabulary("\n# nothing\n")
    with pytest.raises(ValueError, match="line 1"):
        naming.parse_vocabulary("a | b | c")
    assert naming.domain_of("faces64") == "faces-builtin"
    assert naming.domain_of("ffhq1024-nv") == "faces"
    assert naming.domain_of("lhq256") == "landscapes"
    assert naming.domain_of("my-model") == "generic"


def test_clip_names_known_factors():
    """With the trained tiny CLIP, a pure age / skin tone / background axis gets that factor's phrase and sign.

    (Factors the tiny CLIP tells apart; it barely sees smile, and its text directions for "turned to the
    right | left" and "lit from the right | left" coincide, so yaw and light are not testable this way.)
    """
    from interp.directions import DirectionSet

    clip, why = naming.load_paired_clip("faces64")
    if clip is None:
        pytest.skip(f"the built-in CLIP is not trained yet: {why}")
    G = effects.FactorAxisGenerator()
    picks = ["age", "skin_tone", "background"]
    dirs = torch.stack([torch.eye(G.w_dim)[CONTINUOUS.index(n)] for n in picks])
    ds = DirectionSet.create(dirs, torch.ones(3), torch.ones(3), space="w", layers=(0,), method="test",
                             model_id="faces64", model_hash="x")
    names = naming.name_directions(G, ds, clip, naming.default_vocabulary("faces64"), n_samples=4,
                                   strength=1.5, truncation_psi=1.0)
    assert [naming.BUILTIN_PHRASE_FACTORS.get(n.phrase) for n in names] == picks
    assert all(n.sign == 1 for n in names)


def test_paired_clip_missing_for_hub_models_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", "/nonexistent-interp-cache")
    monkeypatch.setattr(naming, "_HUB_CLIPS", {})
    clip, why = naming.load_paired_clip("ffhq512")
    assert clip is None and "ViT-B-32" in why


def test_gradient_directions_on_a_hub_checkpoint_with_clip_pairs(golden):
    """A Hub-format model (NVIDIA pickle, restricted loader) judged by CLIP prompt pairs, as the attributes tab
    does for Hub models: each direction moves its own pair's score and, to first order, not the other's
    (checked by central differences of the scores on the samples the Jacobian was taken on)."""
    from interp.models.loaders import load_checkpoint

    G = load_checkpoint(golden / "sg2ada-tiny64" / "network.pkl").eval()
    judge = ifg.ClipPairScorer(_random_clip(), "glasses: a face with glasses | a face without glasses\n"
                                               "age: an old face | a young face")
    dirs = ifg.gradient_boundaries(G, judge, n=3, seed=1, psi=0.7, std_samples=200)
    assert [b.attribute for b in dirs] == ["glasses", "age"] and all(b.method == "gradient" for b in dirs)
    assert all(b.rows == tuple(range(G.num_ws)) and b.std > 0 and b.scorer_id == judge.id for b in dirs)
    with torch.no_grad():
        ws = G.mapping(G.sample_z(3, 1), truncation_psi=0.7)

        def scores(delta: torch.Tensor) -> torch.Tensor:
            s = judge(G.synthesis(ws + delta, noise_mode="const"), ws)
            return torch.stack([s["glasses"].mean(), s["age"].mean()]).double()

        h = 1e-2
        for i, b in enumerate(dirs):
            change = (scores(h * b.normal) - scores(-h * b.normal)) / (2 * h)   # J d: e_i times a positive gain
            assert change[i] > 0 and abs(float(change[1 - i])) < 0.02 * float(change[i]), change
