"""Training the built-in GAN: a tiny configuration steps, checkpoints and resumes exactly."""
import json
import math

import pytest
import torch

from interp.builtin.faces import render_torch, sample_factors
from interp.builtin.train_gan import (AttributeStatistics, Trainer, TrainConfig, hessian_penalty, load_stats_judge,
                                      main, render_batch, sample_grid, to_8bit)

TINY = TrainConfig(resolution=16, z_dim=16, w_dim=16, mapping_layers=2, channels={4: 16, 8: 16, 16: 8}, batch=4,
                   r1_every=2, pl_weight=1.0, pl_every=2, ema_kimg=0.01)


def _states(tr: Trainer) -> dict[str, torch.Tensor]:
    out = {}
    for prefix, module in (("G", tr.G), ("G_ema", tr.G_ema), ("D", tr.D)):
        out.update({f"{prefix}.{k}": v for k, v in module.state_dict().items()})
    return out


def test_one_step_trains_and_is_finite():
    tr = Trainer(TINY)
    before = {k: v.clone() for k, v in _states(tr).items()}
    stats = tr.train_step(render_batch(TINY, 0))
    assert tr.step == 1 and tr.nimg == 4
    assert all(math.isfinite(v) for v in stats.values())
    assert {"loss_g", "loss_d", "r1", "pl"} <= set(stats)
    after = _states(tr)
    assert not torch.equal(before["G.synthesis.b16.conv1.weight"], after["G.synthesis.b16.conv1.weight"])
    assert not torch.equal(before["D.b16.conv0.weight"], after["D.b16.conv0.weight"])
    assert not torch.equal(before["G.mapping.w_avg"], after["G.mapping.w_avg"])      # w_avg is tracked
    assert torch.equal(after["G_ema.mapping.w_avg"], after["G.mapping.w_avg"])


def test_unsynced_steps_return_the_same_numbers_as_tensors():
    synced, unsynced = Trainer(TINY), Trainer(TINY)
    for step in range(2):
        a = synced.train_step(render_batch(TINY, step))
        b = unsynced.train_step(render_batch(TINY, step), sync=False)     # a GPU run reads them back rarely
        assert a.keys() == b.keys() and all(isinstance(v, torch.Tensor) and v.ndim == 0 for v in b.values())
        assert a == {k: float(v) for k, v in b.items()}


def test_discriminator_warm_up_holds_the_generator(tmp_path):
    cfg = TrainConfig.from_dict(TINY.to_dict() | {"d_warmup_kimg": 0.008})          # the first 8 images: 2 steps
    tr = Trainer(cfg)
    start = {k: v.clone() for k, v in _states(tr).items()}
    for step in range(2):
        stats = tr.train_step(render_batch(cfg, step))
        assert "loss_g" not in stats and math.isfinite(stats["loss_d"])
    held = {k: v.clone() for k, v in _states(tr).items()}
    for k, v in held.items():
        if k.startswith(("G.", "G_ema.")) and not k.endswith("w_avg"):
            assert torch.equal(v, start[k]), k                                       # G and its EMA are held
    assert not torch.equal(held["D.b16.conv0.weight"], start["D.b16.conv0.weight"])
    assert not tr.d_warming_up and "loss_g" in tr.train_step(render_batch(cfg, 2))  # then both train
    trained = _states(tr)
    for prefix in ("G.", "G_ema."):
        k = prefix + "synthesis.b16.conv1.weight"
        assert not torch.equal(trained[k], held[k]), k
    tr.save(tmp_path / "state.pt")                                   # a resumed run may lengthen the warm-up
    assert Trainer.load(tmp_path / "state.pt", overrides={"d_warmup_kimg": 0.016}).d_warming_up
    with pytest.raises(ValueError, match="d_warmup_kimg"):
        TrainConfig(d_warmup_kimg=-1)


def test_a_wider_discriminator():
    wide = {4: 32, 8: 32, 16: 16}
    cfg = TrainConfig.from_dict(TINY.to_dict() | {"d_channels": {str(k): v for k, v in wide.items()}})
    assert cfg.d_channels == wide and TrainConfig.from_dict(cfg.to_dict()) == cfg           # saved as JSON
    tr = Trainer(cfg)
    assert tr.D.b16.conv0.weight.shape[0] == 16 and tr.G.synthesis.b16.conv1.weight.shape[0] == 8
    assert math.isfinite(tr.train_step(render_batch(cfg, 0))["loss_d"])
    with pytest.raises(ValueError, match="d_channels needs the resolutions"):
        TrainConfig.from_dict(TINY.to_dict() | {"d_channels": {"4": 32}})


@pytest.mark.parametrize("hidden", [0, 16])
def test_a_discriminator_on_the_segmenter_features(tmp_path, hidden):
    cfg = TrainConfig.from_dict(TINY.to_dict() | {"d_features": "segmenter", "d_head_hidden": hidden})
    tr = Trainer(cfg)
    assert len(list(tr.heads.outs[0].parameters())) == (4 if hidden else 2)  # a hidden layer before the logit
    frozen = {k: v.clone() for k, v in tr.features.state_dict().items()}
    heads = {k: v.clone() for k, v in tr.heads.named_parameters()}
    real = render_batch(cfg, 0)
    logits = tr.discriminate(real)
    assert logits.shape == (4,)
    assert not torch.allclose(logits, tr.D(real))                          # the heads add their own logits
    stats = tr.train_step(real)
    assert all(math.isfinite(v) for v in stats.values())
    for k, v in tr.heads.named_parameters():
        assert not torch.equal(v, heads[k]), k                             # the heads train with D
    for k, v in tr.features.state_dict().items():
        assert torch.equal(v, frozen[k]), k                                # the judge stays as shipped
    tr.save(tmp_path / "state.pt")
    resumed = Trainer.load(tmp_path / "state.pt")
    for k, v in tr.heads.state_dict().items():
        assert torch.equal(resumed.heads.state_dict()[k], v), k
    a, b = tr.train_step(render_batch(cfg, 1)), resumed.train_step(render_batch(cfg, 1))
    for k in ("loss_g", "loss_d", "real", "fake"):                        # (the lazy stats are not saved)
        assert a[k] == pytest.approx(b[k], rel=1e-5), k
    with pytest.raises(ValueError, match="d_features"):
        TrainConfig(d_features="predictor")
    with pytest.raises(ValueError, match="d_head_hidden"):
        TrainConfig(d_head_hidden=-1)


def test_path_length_mean_starts_at_the_first_measurement():
    tr = Trainer(TINY)
    stats = tr.train_step(render_batch(TINY, 0))                  # step 0 measures the path lengths
    assert stats["pl"] > 0 and float(tr.pl_mean) == pytest.approx(stats["pl"], rel=1e-6)
    tr.train_step(render_batch(TINY, 1))
    third = tr.train_step(render_batch(TINY, 2))                  # then a running mean (lerp 0.01)
    assert float(tr.pl_mean) == pytest.approx(stats["pl"] + 0.01 * (third["pl"] - stats["pl"]), rel=1e-5)


def test_resume_equals_uninterrupted(tmp_path):
    straight = Trainer(TINY)
    for step in range(3):
        straight.train_step(render_batch(TINY, step))

    first = Trainer(TINY)
    first.train_step(render_batch(TINY, 0))
    first.save(tmp_path / "state.pt")
    resumed = Trainer.load(tmp_path / "state.pt")
    assert resumed.step == 1 and resumed.cfg == TINY
    for step in range(1, 3):
        resumed.train_step(render_batch(TINY, step))

    a, b = _states(straight), _states(resumed)
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_resume_with_a_larger_batch(tmp_path):
    tr = Trainer(TINY)
    tr.train_step(render_batch(TINY, 0))
    tr.save(tmp_path / "state.pt")
    with pytest.raises(ValueError, match="can only change"):
        Trainer.load(tmp_path / "state.pt", overrides={"lr_g": 0.01})
    bigger = Trainer.load(tmp_path / "state.pt", overrides={"batch": 8})
    assert bigger.cfg.batch == 8 and bigger.nimg == 4
    bigger.train_step(render_batch(bigger.cfg, bigger.step))
    assert bigger.step == 2 and bigger.nimg == 12                 # 4 images, then 8
    bigger.save(tmp_path / "state.pt")
    assert Trainer.load(tmp_path / "state.pt").nimg == 12


def test_cli_trains_saves_and_exports(tmp_path):
    from interp.models.loaders import load_checkpoint

    run = tmp_path / "run"
    cfg = TINY.to_dict() | {"pl_weight": 0.0}
    main(["--run", str(run), "--kimg", "0.012", "--config", json.dumps(cfg), "--device", "cpu",
          "--save-every", "0.004", "--snapshot-every", "0.008"])
    assert Trainer.load(run / "state.pt").nimg == 12
    assert (run / "samples_00000.png").exists() and (run / "log.jsonl").exists()
    main(["--run", str(run), "--kimg", "0.02", "--config", '{"batch": 8}', "--device", "cpu"])
    assert Trainer.load(run / "state.pt").nimg == 20 and json.loads((run / "config.json").read_text())["batch"] == 8
    with pytest.raises(SystemExit):                      # a resumed run keeps its learning rates
        main(["--run", str(run), "--config", '{"lr_g": 0.1}', "--device", "cpu"])
    with pytest.raises(SystemExit):
        main(["--run", str(tmp_path / "other"), "--config", "{not json", "--device", "cpu"])
    with pytest.raises(SystemExit):                      # no run state: nothing to export
        main(["--run", str(tmp_path / "other"), "--export", str(tmp_path / "none.safetensors")])
    main(["--run", str(run), "--export", str(tmp_path / "g.safetensors")])
    G = load_checkpoint(tmp_path / "g.safetensors")
    assert G.img_resolution == 16 and (tmp_path / "samples.png").exists()
    # a new run from the exported generator, fine-tuned with the Hessian penalty
    fresh = Trainer(TrainConfig.from_dict(cfg))
    fresh.init_generator(tmp_path / "g.safetensors")
    for k, v in G.state_dict().items():
        assert torch.equal(fresh.G.state_dict()[k], v) and torch.equal(fresh.G_ema.state_dict()[k], v), k
    tuned = tmp_path / "tuned"
    main(["--run", str(tuned), "--kimg", "0.004", "--init", str(tmp_path / "g.safetensors"), "--device", "cpu",
          "--config", json.dumps(cfg | {"hessian_weight": 0.1, "hessian_every": 1})])
    started = Trainer.load(tuned / "state.pt")
    assert started.nimg == 4 and started.cfg.hessian_weight == 0.1
    main(["--run", str(tuned), "--kimg", "0.008", "--device", "cpu", "--config", '{"hessian_weight": 0}'])
    stopped = Trainer.load(tuned / "state.pt")                # a resumed run may turn the penalty off
    assert stopped.nimg == 8 and stopped.cfg.hessian_weight == 0
    with pytest.raises(SystemExit):                      # --init on an existing run
        main(["--run", str(tuned), "--init", str(tmp_path / "g.safetensors"), "--device", "cpu"])
    with pytest.raises(SystemExit):                      # a generator of other sizes
        main(["--run", str(tmp_path / "wrong"), "--init", str(tmp_path / "g.safetensors"), "--device", "cpu",
              "--config", json.dumps(cfg | {"w_dim": 8})])


def test_hessian_penalty_is_zero_exactly_for_independent_inputs():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 4, requires_grad=True)
    separable = lambda v: torch.stack([v[:, 0] ** 2, 3 * v[:, 1] ** 2 - v[:, 2] ** 2, v[:, 3]], dim=1)
    entangled = lambda v: torch.stack([v[:, 0] * v[:, 1], v[:, 2] ** 2], dim=1)
    assert float(hessian_penalty(separable, x, k=8, generator=gen).detach()) < 1e-6
    # v^T H v = 2 v0 v1 in {-2, +2}: with 8 directions, the unbiased variance is 4 * 8 / 7 * (1 - mean^2 / 4)
    penalty = hessian_penalty(entangled, x, k=8, generator=gen)
    assert 1.0 < float(penalty.detach()) < 5.0
    penalty.backward()                                   # differentiable (the weights it trains get gradients)
    assert x.grad is not None
    with pytest.raises(ValueError, match="Hessian penalty"):
        TrainConfig(hessian_k=1)


def test_a_step_with_the_hessian_penalty():
    cfg = TrainConfig.from_dict(TINY.to_dict() | {"hessian_weight": 1.0, "hessian_every": 2, "pl_weight": 0.0})
    tr = Trainer(cfg)
    stats = tr.train_step(render_batch(cfg, 0))
    assert "hessian" in stats and math.isfinite(stats["hessian"]) and stats["hessian"] > 0
    later = tr.train_step(render_batch(cfg, 1))          # no penalty this step: its last value is reported
    assert later["hessian"] == stats["hessian"] and later["r1"] == stats["r1"]


JUDGE = "assets/builtin/predictor"          # the tests' judge; a real run takes a second predictor


def _renders(n: int, seed: int) -> torch.Tensor:
    return to_8bit(render_torch(sample_factors(n, seed=seed), size=64)[0])


def test_attribute_statistics_tell_renders_from_a_generator_without_variety():
    stats = AttributeStatistics(load_stats_judge(JUDGE, torch.device("cpu")), [_renders(512, 1)], momentum=0.5)
    d = stats.target.shape[0]
    assert d == 14 and torch.allclose(stats.target.diagonal(), torch.ones(d), atol=1e-4)   # a correlation matrix
    with torch.no_grad():
        _, renders = stats.loss(_renders(512, 2))                    # other renders: only sampling noise
        stats.running = None
        _, same = stats.loss(_renders(1, 3).expand(512, -1, -1, -1))  # one face 512 times: no variance at all
    assert renders < 1.0 < d - 1 < same
    img = _renders(8, 4).requires_grad_(True)
    loss, _ = stats.loss(img)
    loss.backward()
    assert img.grad is not None and img.grad.abs().sum() > 0       # differentiable down to the pixels
    before = stats.running
    stats.load_state_dict(stats.state_dict())
    assert all(torch.equal(a, b) for a, b in zip(before, stats.running))
    with pytest.raises(ValueError, match="stats_judge"):
        load_stats_judge("runs/no/such/judge", torch.device("cpu"))
    with pytest.raises(ValueError, match="needs stats_judge"):
        TrainConfig(stats_weight=1.0)
    with pytest.raises(ValueError, match="stats_momentum"):
        TrainConfig(stats_momentum=0)


def test_steps_with_attribute_statistics_resume_exactly(tmp_path):
    cfg = TrainConfig.from_dict(TINY.to_dict() | {"stats_weight": 1.0, "stats_judge": JUDGE, "stats_real_n": 64,
                                                  "style_mixing": 0.0, "stats_every": 1})
    straight = Trainer(cfg)
    first = [straight.train_step(render_batch(cfg, step)) for step in range(3)]
    assert all(math.isfinite(s["attr_stats"]) and s["attr_stats"] > 0 for s in first)

    tr = Trainer(cfg)
    tr.train_step(render_batch(cfg, 0))
    tr.save(tmp_path / "state.pt")
    resumed = Trainer.load(tmp_path / "state.pt")
    assert resumed.attr_stats.running is not None                  # the running statistics are saved
    later = [resumed.train_step(render_batch(cfg, step)) for step in (1, 2)]
    assert [s["attr_stats"] for s in later] == pytest.approx([s["attr_stats"] for s in first[1:]], rel=1e-5)
    a, b = _states(straight), _states(resumed)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)
    off = Trainer.load(tmp_path / "state.pt", overrides={"stats_weight": 0.0})   # a resume may switch it off
    assert off.attr_stats is None and "attr_stats" not in off.train_step(render_batch(cfg, 1))
    mixing = Trainer.load(tmp_path / "state.pt", overrides={"style_mixing": 1.0})  # or mix every batch:
    running = mixing.attr_stats.running
    assert "attr_stats" not in mixing.train_step(render_batch(cfg, 1))          # mixed batches do not count
    assert all(torch.equal(a, b) for a, b in zip(running, mixing.attr_stats.running))


def test_device_renders_match_the_cpu_renders():
    factors = sample_factors(TINY.batch, seed=0)          # render_batch(TINY, 0) renders these factors
    on_device = to_8bit(render_torch(factors, size=16)[0])
    assert (on_device - render_batch(TINY, 0)).abs().max() < 1e-5


def test_render_batches_are_deterministic_per_step():
    assert torch.equal(render_batch(TINY, 5), render_batch(TINY, 5))
    assert not torch.equal(render_batch(TINY, 5), render_batch(TINY, 6))
    assert render_batch(TINY, 0).shape == (4, 3, 16, 16)


def test_sample_grid_and_config_errors():
    tr = Trainer(TINY)
    grid = sample_grid(tr.G_ema, rows=2)
    assert grid.shape == (32, 32, 3) and grid.dtype.name == "uint8"
    with pytest.raises(ValueError, match="unknown training config keys"):
        TrainConfig.from_dict({"batch_size": 8})


def test_gan_evaluation_statistics():
    import numpy as np

    from interp.builtin.evaluate_gan import compare, frechet_distance
    from interp.builtin.faces import FACTORS, PARTS, sample_factors

    rng = np.random.default_rng(0)
    a = rng.normal(size=(500, 8))
    assert abs(frechet_distance(a, a)) < 1e-6
    assert frechet_distance(a, a + 1.0) == pytest.approx(8.0, rel=1e-6)      # mean shift of 1 in 8 dims
    real = {k: v.astype(float) for k, v in sample_factors(400, seed=1).items()}
    real["parts"] = rng.dirichlet(np.ones(len(PARTS)), size=400)
    same = compare(real, real)
    assert all(v.get("gap", v.get("w1", v.get("tv"))) == 0 for v in same["factors"].values())
    assert same["age_glasses_corr"]["diff"] == 0 and same["age_glasses_corr"]["real"] > 0.2
    no_glasses = dict(real, glasses=np.zeros(400))
    c = compare(no_glasses, real)
    assert c["factors"]["glasses"]["gap"] == pytest.approx(real["glasses"].mean())
    assert np.isnan(c["age_glasses_corr"]["gen"])                             # constant factor: undefined
    assert {f.name for f in FACTORS} == set(c["factors"])


def test_gan_evaluation_targets_include_the_categorical_factor():
    from interp import load_generator
    from interp.builtin.evaluate_gan import TARGETS, evaluate

    result = evaluate(load_generator("faces64"), n=48)
    targets = result["targets"]
    assert set(targets) == {"fd_normalised", "binary_gap_mean", "continuous_w1_over_range_max", "categorical_tv_max",
                            "age_glasses_corr_diff", "part_fraction_rel_max"}
    tv = targets["categorical_tv_max"]
    assert tv["value"] == result["factors"]["hair_color"]["tv"] > 0 and tv["target"] == TARGETS["categorical_tv"]
    assert all(t["met"] == (t["value"] <= t["target"]) for t in targets.values())
