"""Train the tiny CLIP contrastively on renders and generated captions.

    python -m interp.builtin.train_clip [--steps 1500 --batch 128 --device auto]

Each step renders a fresh batch, writes one caption per image (``clip.caption``: random subset
of factors, varied templates and synonyms) and minimises the symmetric InfoNCE loss of CLIP.
By default a batch is made of counterfactual twins (``clip.twin_batch``): half the faces repeat
the other half with one factor changed, and both captions name that factor, so the contrastive
loss must read fine details (mouth curvature, eye openness) and not only the easy ones.
An auxiliary loss (``--aux-weight``) asks linear heads on the image embedding to predict the
factors; the heads are dropped at export, the shipped model is a plain open_clip CLIP.
Resumable (runs/builtin/clip/), seeded. Writes assets/builtin/clip.safetensors in float16
(open_clip loads it into the float32 model) next to the shipped config JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from .clip import CLIP_NAME, CLIP_WEIGHTS, captions, clip_image_input, register, twin_batch
from .common import (TRAIN_SEED_BASE, add_train_args, factor_targets, pick_device,
                     seed_everything, train_loop, training_meta)
from .faces import render_torch, sample_factors


def main(argv: list[str] | None = None) -> None:
    import open_clip

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_args(ap, steps=1500, batch=128, lr=2e-3)
    ap.add_argument("--twins", type=int, default=1, help="1: batches of counterfactual twins (one aspect changed, "
                    "named in both captions); 0: independent faces")
    ap.add_argument("--twin-weights", default="", help="override clip.TWIN_WEIGHTS, e.g. 'eye_open=6,smile=4'")
    ap.add_argument("--aux-weight", type=float, default=1.0, help="weight of the auxiliary factor heads on the image "
                    "embedding (0 disables them; see the comment in main)")
    ap.add_argument("--init", default=None, help="start from these weights (a .safetensors written by this script)")
    args = ap.parse_args(argv)
    dev = pick_device(args.device)
    twin_weights = {k: float(v) for k, v in (kv.split("=") for kv in args.twin_weights.split(",") if kv)}
    seed_everything(args.seed)
    name = register()
    model = open_clip.create_model(name, device=dev)
    tokenizer = open_clip.get_tokenizer(name)
    if args.init:
        from safetensors.torch import load_file
        sd = (load_file(args.init) if args.init.endswith(".safetensors")
              else torch.load(args.init, map_location="cpu", weights_only=True)["model"])
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in sd.items()})

    # Auxiliary factor heads on the image embedding (training only, not shipped): without them the
    # contrastive loss settles on the salient factors (background, skin, glasses) and never
    # separates subtle ones (mouth curvature, eye openness) in either tower. With them the image
    # embedding encodes every factor linearly and the text tower learns to align with it.
    from .faces import FACTORS as _F
    aux = torch.nn.ModuleDict({spec.name: torch.nn.Linear(model.visual.output_dim, len(spec.categories) or 1)
                               for spec in _F}).to(dev)
    holder = torch.nn.ModuleDict({"clip": model, "aux": aux})

    def aux_loss(feats, f):
        tgt = factor_targets({k: torch.as_tensor(v, device=dev) for k, v in f.items()})
        total = 0.0
        for spec in _F:
            o = aux[spec.name](feats)
            if spec.kind == "continuous":
                total = total + F.mse_loss(o.squeeze(1), tgt[spec.name])
            elif spec.kind == "binary":
                total = total + F.binary_cross_entropy_with_logits(o.squeeze(1), tgt[spec.name])
            else:
                total = total + F.cross_entropy(o, tgt[spec.name])
        return total

    def step_loss(h, step):
        m = h["clip"]
        seed = TRAIN_SEED_BASE + (args.seed + 2000) * 10**7 + step
        if args.twins:
            f, must = twin_batch(args.batch, seed, twin_weights)
        else:
            f, must = sample_factors(args.batch, seed), None
        x, _ = render_torch(f, 64, device=dev)
        x = clip_image_input(x).contiguous(memory_format=torch.channels_last)
        text = tokenizer(captions(f, seed, must)).to(dev)
        feats = m.encode_image(x)
        img_f = F.normalize(feats, dim=-1)
        txt_f = F.normalize(m.encode_text(text), dim=-1)
        logits = m.logit_scale.exp().clamp(max=100) * img_f @ txt_f.T   # [B, B]
        labels = torch.arange(len(logits), device=dev)
        loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
        acc = (logits.argmax(1) == labels).float().mean().item()
        logs = {"acc": acc, "scale": m.logit_scale.exp().item()}
        if args.aux_weight > 0:
            la = aux_loss(img_f * img_f.shape[1] ** 0.5, f)   # unit-norm embedding, rescaled
            logs["aux"] = la.item()
            loss = loss + args.aux_weight * la
        return loss, logs

    t0 = time.time()
    train_loop("clip", holder, step_loss, args)
    out = Path(args.out + ".safetensors") if args.out else CLIP_WEIGHTS
    sd = {k: v.detach().cpu().half().contiguous() if v.is_floating_point() else v.detach().cpu().contiguous()
          for k, v in model.state_dict().items()}
    save_file(sd, str(out), metadata={"model": CLIP_NAME, "dtype": "float16"})
    os.chmod(out, 0o644)
    with open(out.with_suffix(".train.json"), "w") as fh:
        json.dump(training_meta(args, dev, t0, twins=args.twins, twin_weights=args.twin_weights,
                                aux_weight=args.aux_weight, init=args.init), fh, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
