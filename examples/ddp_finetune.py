"""Fine-tune a tiny C3D on a UCF101-layout folder with DistributedDataParallel.

Run (CPU, two processes, gloo):
    python -c "from fxprune.data import write_synthetic_ucf101 as w; w('/tmp/ucf_tiny', size=32)"
    torchrun --nproc_per_node 2 examples/ddp_finetune.py --data /tmp/ucf_tiny --steps 3

Each rank prints the SHA-256 of its final weights (and with --checksum-dir
writes rank<N>.json there); DDP averages the gradients, so they must agree.
--prune RATIO first prunes the model with fxprune.compile, to fine-tune the
emitted GraphModule instead; --distill WEIGHT then distils from the unpruned model
(fxprune.train.fine_tune's teacher=); --generate writes the synthetic set if --data is empty.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
import torch.distributed as dist

import fxprune
from fxprune.data import UCF101, write_synthetic_ucf101
from fxprune.distributed import (
    DistributedInfo,
    distributed_session,
    make_loader,
    weights_checksum,
)
from fxprune.models import c3d
from fxprune.train import fine_tune


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="UCF101-layout folder (with trainlist01.txt)")
    parser.add_argument("--steps", type=int, default=3, help="optimizer steps per rank")
    parser.add_argument("--batch-size", type=int, default=2, help="clips per batch per rank")
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--clip-length", type=int, default=16, help="frames per clip (C3D needs >= 16)")
    parser.add_argument("--size", type=int, default=32, help="crop size in pixels")
    parser.add_argument("--width", type=float, default=0.0625, help="C3D width multiplier")
    parser.add_argument("--prune", type=float, default=0.0, help="prune this fraction of channels first")
    parser.add_argument("--distill", type=float, default=0.0,
                        help="with --prune: learn from the unpruned model's logits too, with this weight")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per rank)")
    parser.add_argument("--checksum-dir", type=Path, default=None, help="write rank<N>.json checksums here")
    parser.add_argument("--generate", action="store_true", help="write a synthetic UCF101 into --data if empty")
    return parser.parse_args()


def build_model(args: argparse.Namespace, num_classes: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The model to train and the unpruned original (the teacher for --distill)."""
    # The same seed on every rank; DDP would broadcast rank 0's weights anyway,
    # but a pruned structure must be identical on all ranks, so it must be deterministic.
    torch.manual_seed(0)
    original = c3d(num_classes=num_classes, clip_length=args.clip_length, input_size=args.size, width=args.width)
    model = original
    if args.prune > 0:
        example = (torch.randn(1, 3, args.clip_length, args.size, args.size),)
        model = fxprune.compile(original.eval(), args.prune, example_inputs=example).module
    return model, original


def report(args: argparse.Namespace, info: DistributedInfo, record: dict[str, object]) -> None:
    print(f"rank {info.rank}/{info.world_size}: weights sha256 {record['checksum']} loss {record['loss']}", flush=True)
    if args.checksum_dir is not None:
        args.checksum_dir.mkdir(parents=True, exist_ok=True)
        (args.checksum_dir / f"rank{info.rank}.json").write_text(json.dumps(record, indent=2))


def main() -> None:
    args = parse_args()
    with distributed_session(args.device) as info:
        if args.generate and info.is_main and not any(args.data.glob("*/*.*")):
            write_synthetic_ucf101(args.data, size=max(args.size, 32), frames=max(24, args.clip_length))
        if info.world_size > 1:
            dist.barrier()  # the other ranks wait for rank 0's files
        dataset = UCF101(
            args.data,
            split="train",
            clip_length=args.clip_length,
            size=args.size,
            sampling="random",
            progress=info.is_main,
        )
        model, original = build_model(args, dataset.num_classes)
        initial, teacher_initial = weights_checksum(model), weights_checksum(original)
        loader = make_loader(dataset, args.batch_size, shuffle=True)
        teacher = original if args.distill > 0 else None
        history = fine_tune(model, loader, steps=args.steps, lr=args.lr, device=args.device, progress=info.is_main,
                            teacher=teacher, distill=args.distill or 0.5)
        record = {
            "rank": info.rank,
            "world_size": info.world_size,
            "checksum": weights_checksum(model),
            "initial_checksum": initial,
            "teacher_unchanged": weights_checksum(original) == teacher_initial,
            "distill": history["distill"],
            "loss": history["loss"],
            "samples_per_rank": len(loader.sampler),  # type: ignore[arg-type]
        }
        report(args, info, record)


if __name__ == "__main__":
    main()
