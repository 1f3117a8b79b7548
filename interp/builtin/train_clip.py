"""Train the tiny CLIP contrastively on renders and generated captions.

    python -m interp.builtin.train_clip [--steps 1500 --batch 128 --device auto]

Each step renders a fresh batch, writes one caption per image (``clip.caption``: random subset
of factors, varied templates and synonyms) and minimises the symmetric InfoNCE loss of CLIP.
Resumable (runs/builtin/clip/), seeded. Writes assets/builtin/clip.safetensors in float16
(open_clip loads it into the float32 model) next to the shipped config JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from .clip import CLIP_NAME, CLIP_WEIGHTS, captions, clip_image_input, register
from .common import TRAIN_SEED_BASE, add_train_args, pick_device, seed_everything, train_loop
from .faces import render_torch, sample_factors


def main(argv: list[str] | None = None) -> None:
    import open_clip

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_train_args(ap, steps=1500, batch=128, lr=2e-3)
    args = ap.parse_args(argv)
    dev = pick_device(args.device)
    seed_everything(args.seed)
    name = register()
    model = open_clip.create_model(name, device=dev)
    tokenizer = open_clip.get_tokenizer(name)

    def step_loss(m, step):
        seed = TRAIN_SEED_BASE + (args.seed + 2000) * 10**7 + step
        f = sample_factors(args.batch, seed)
        x, _ = render_torch(f, 64, device=dev)
        x = clip_image_input(x).contiguous(memory_format=torch.channels_last)
        text = tokenizer(captions(f, seed)).to(dev)
        img_f = F.normalize(m.encode_image(x), dim=-1)
        txt_f = F.normalize(m.encode_text(text), dim=-1)
        logits = m.logit_scale.exp().clamp(max=100) * img_f @ txt_f.T   # [B, B]
        labels = torch.arange(len(logits), device=dev)
        loss = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
        acc = (logits.argmax(1) == labels).float().mean().item()
        return loss, {"acc": acc, "scale": m.logit_scale.exp().item()}

    t0 = time.time()
    train_loop("clip", model, step_loss, args)
    out = Path(args.out + ".safetensors") if args.out else CLIP_WEIGHTS
    sd = {k: v.detach().cpu().half().contiguous() if v.is_floating_point() else v.detach().cpu().contiguous()
          for k, v in model.state_dict().items()}
    save_file(sd, str(out), metadata={"model": CLIP_NAME, "dtype": "float16"})
    with open(out.with_suffix(".train.json"), "w") as fh:
        json.dump({"steps": args.steps, "batch": args.batch, "lr": args.lr, "seed": args.seed,
                   "images_seen": args.steps * args.batch, "device": str(dev),
                   "last_session_seconds": round(time.time() - t0, 1)}, fh, indent=2)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
