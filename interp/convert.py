"""Convert a StyleGAN2 checkpoint (NVIDIA .pkl, rosinality .pt) to interp's safetensors format.

    python -m interp.convert stylegan2-ffhq-256x256.pkl assets/ffhq256.safetensors
    python -m interp.convert stylegan2-ffhq-config-f.pt ffhq1024.safetensors --force

The output holds the NVIDIA-named fp32 state dict and, in the safetensors metadata, the generator
config as JSON (`format = "interp.stylegan2"`), so loading it needs neither pickle nor code.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from interp.models.loaders import CheckpointError, build_generator, detect_format, read_checkpoint, save_generator

FORMAT_NAMES = {"nvidia-pkl": "NVIDIA network pickle", "torch": "PyTorch (rosinality) checkpoint",
                "safetensors": "interp safetensors"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m interp.convert",
        description="Convert a StyleGAN2 checkpoint (NVIDIA .pkl or rosinality .pt) to interp's safetensors "
                    "format (weights + config JSON, no pickle).")
    parser.add_argument("src", type=Path, help="checkpoint to read: .pkl (NVIDIA), .pt (rosinality) or .safetensors")
    parser.add_argument("dst", type=Path, help="output file; must end in .safetensors")
    parser.add_argument("--force", action="store_true", help="overwrite DST if it exists")
    args = parser.parse_args(argv)

    if args.dst.suffix != ".safetensors":
        parser.error(f"DST must end in .safetensors, got {str(args.dst)!r}")
    if args.dst.exists() and not args.force:
        parser.error(f"{str(args.dst)!r} exists; pass --force to overwrite it")
    if args.dst.resolve() == args.src.resolve():
        parser.error("SRC and DST are the same file")
    t0 = time.perf_counter()
    try:
        fmt = detect_format(args.src)
        config, state_dict = read_checkpoint(args.src)
        G = build_generator(config, state_dict, source=args.src.name)
    except CheckpointError as e:
        print(f"error: cannot convert {str(args.src)!r}: {e}", file=sys.stderr)
        return 2
    save_generator(G, args.dst)
    n_params = sum(t.numel() for t in state_dict.values())
    print(f"read {FORMAT_NAMES[fmt]} {str(args.src)!r}: {config.img_resolution}x{config.img_resolution}, "
          f"z_dim {config.z_dim}, w_dim {config.w_dim}, {n_params / 1e6:.2f}M values")
    print(f"wrote {str(args.dst)!r} ({args.dst.stat().st_size / 2**20:.1f} MiB, content hash {G.content_hash()}) "
          f"in {time.perf_counter() - t0:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
