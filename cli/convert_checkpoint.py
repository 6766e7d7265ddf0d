"""``ecgcore convert-checkpoint IN OUT``: rewrite an official or ecgcore checkpoint as plain safetensors.

IN may also be a ``best.pt`` / ``last.pt`` of ``ecgcore train``, or its run
directory (its ``checkpoints/best.pt``) (loaded with
``weights_only``; the model is rebuilt from its stored spec and weights, the
training state is left out). Runs with ``data.aggregate: attention`` are
refused: their attention pool is not part of a plain model.

The output holds the weights under ecgcore's names and, in its header
metadata, the model name, its configuration (JSON) and a SHA-256 of the
tensor data, so ``ecgcore.models.load(OUT)`` rebuilds the model without
torch.load and without any pickle.
"""

from __future__ import annotations

import json
import os
import sys


def add_parser(sub):
    p = sub.add_parser("convert-checkpoint", help="convert a model checkpoint to safetensors",
                       description=__doc__)
    p.add_argument("input", metavar="IN", help="ECG-FM .pt, ECGFounder .pth, DL-AtCM .pt, ecgcore .safetensors or an "
                        "'ecgcore train' best.pt/last.pt")
    p.add_argument("output", metavar="OUT", help="output .safetensors path")
    p.add_argument("--model", default=None,
                   help="registry name (default: detected from the checkpoint; see ecgcore.models.list_models())")
    p.add_argument("--config", default=None, metavar="JSON",
                   help="architecture config file for checkpoints that do not store one (e.g. a Net1D config.json)")
    return p


def run(args) -> int:
    from ecgcore.errors import ECGError
    from ecgcore import models
    try:
        config = None
        if args.config:
            try:
                with open(args.config) as f:
                    config = json.load(f)
            except (OSError, json.JSONDecodeError) as exc:
                print(f"ecgcore convert-checkpoint: cannot read config {args.config}: {exc}", file=sys.stderr)
                return 2
        if os.path.isdir(args.input):   # an 'ecgcore train' run directory, as predict/evaluate take
            found = [c for c in (os.path.join(args.input, "checkpoints", "best.pt"),
                                 os.path.join(args.input, "best.pt")) if os.path.isfile(c)]
            if not found:
                print(f"ecgcore convert-checkpoint: {args.input}: a directory without checkpoints/best.pt "
                      f"(name the checkpoint file)", file=sys.stderr)
                return 2
            args.input = found[0]
        name = args.model
        if name is None:
            from ecgcore.models.checkpoint import detect_model, read_checkpoint
            name = detect_model(read_checkpoint(args.input))
        model = models.create(name, pretrained=args.input, config=config)
        models.save(model, args.output)
    except ECGError as exc:
        msg = str(exc)
        # the library's hints name Python calls; say what to change on this command line
        if "does not match" in msg and args.config is None:
            msg += (" -- checkpoints that do not store their architecture need it given: "
                    "--config CONFIG.json (e.g. the config.json published with the weights)")
        elif "use create(" in msg:
            msg += " -- on the command line: leave --model out to use the detected model"
        print(f"ecgcore convert-checkpoint: {msg}", file=sys.stderr)
        return 1
    n = sum(v.numel() for v in model.state_dict().values())
    kept = "; its preset, scalers and thresholds kept" if getattr(model, "deploy", None) else ""
    print(f"{args.input} -> {args.output}: {name}, {len(model.state_dict())} tensors, {n:,} values{kept}")
    return 0
