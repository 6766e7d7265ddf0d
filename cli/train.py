"""``ecgcore train --config CONFIG.yaml --out DIR [--resume] [--set key=value ...]``.

Trains the model described by a YAML config (see ``configs/`` and
``ecgcore.models.train.config``) and writes ``DIR/metrics.json``,
``DIR/checkpoints/{best,last}.pt``, ``DIR/log.csv``, ``DIR/predictions.csv``
(validation and test records), ``DIR/best.safetensors`` (the best weights as
a plain model file: ``ecgcore.models.load`` or ``model.pretrained`` of a
follow-up config; not with ``data.aggregate: attention``) and, when
tensorboard is installed, ``DIR/tensorboard``. The config is validated before anything is built: an
unknown key or a wrong type exits 2 naming the key. Runs under
``torchrun --nproc_per_node=N -m ecgcore train ...`` for DDP.
"""

from __future__ import annotations

import os
import sys

from ._common import os_error_line


def add_parser(sub):
    p = sub.add_parser("train", help="train a model from a YAML config", description=__doc__)
    p.add_argument("--config", required=True, metavar="CONFIG.yaml")
    p.add_argument("--out", required=True, metavar="DIR", help="run directory")
    p.add_argument("--resume", action="store_true", help="continue from DIR/checkpoints/last.pt")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (dotted key, YAML value), e.g. --set optim.lr=1e-4")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--check", action="store_true", help="validate the config and exit")
    return p


def run(args) -> int:
    from ecgcore.errors import CheckpointError, ConfigError, PreprocessError
    from ecgcore.models.train import load_config, train
    from ecgcore.models.train import ddp
    try:
        cfg = load_config(args.config, args.overrides)
    except ConfigError as exc:
        print(f"ecgcore train: {exc}", file=sys.stderr)
        return 2
    if args.check:
        print(f"ecgcore train: {args.config}: config OK", file=sys.stderr)
        return 0
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        print(f"ecgcore train: --out {args.out}: exists and is not a directory", file=sys.stderr)
        return 2
    main = True
    try:
        result = train(cfg, args.out, resume=args.resume, progress=False if args.no_progress else None)
        main = ddp.is_main()   # read before teardown: afterwards every process reports rank 0
    except (ConfigError, CheckpointError, PreprocessError) as exc:
        print(f"ecgcore train: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:   # the run directory cannot be written (read-only, full disk, no such parent)
        print(f"ecgcore train: {os_error_line(exc, args.out)}", file=sys.stderr)
        return 1
    finally:
        ddp.teardown()
    if main and result.get("resumed_finished_run"):
        weights = os.path.join(args.out, "best.safetensors")
        more = (f"; to train longer, start a new run from its weights (model.pretrained: {weights})"
                if os.path.isfile(weights) else "")
        print(f"ecgcore train: {args.out}: {result['resumed_finished_run']}{more}", file=sys.stderr)
    if main:
        if result["best_epoch"] is None:   # train.epochs: 0, or no finite monitor value in any epoch
            print(f"ecgcore train: no epoch was selected ({result['monitor']} never finite, or no epoch "
                  f"trained): the final weights are kept; metrics in {args.out}/metrics.json", file=sys.stderr)
        else:
            print(f"ecgcore train: best epoch {result['best_epoch']} ({result['monitor']} = "
                  f"{result['best_value']}); metrics in {args.out}/metrics.json", file=sys.stderr)
    return 0

