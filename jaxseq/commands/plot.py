"""`jaxseq plot RUN_DIR`: a training run's curves as a PNG, from its metrics.jsonl.

    jaxseq plot checkpoints/cola [--output cola.png] [--title "CoLA, transformer"]

RUN_DIR is a checkpoint folder (its log is in RUN_DIR/logs), a `--log-dir`, or the
metrics.jsonl file itself. `--output` is the PNG file to write, under exactly that name, or
an existing folder to write curves.png into. The picture (`jaxseq.train.progress.save_run_curves`): the train
loss against the step, the validation metrics against the epoch, the learning rate.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser("plot", help="draw a training run's curves (loss, validation, learning rate) "
                                                "from its metrics.jsonl to a PNG")
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR",
                        help="a checkpoint folder, a --log-dir, or a metrics.jsonl file")
    parser.add_argument("--output", type=Path, default=None, metavar="PNG",
                        help="the PNG file to write, or a folder to write curves.png into (default: "
                             "curves.png beside metrics.jsonl)")
    parser.add_argument("--title", default=None, help="the figure's title (default: the run's folder)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxseq.train.progress import check_title, save_run_curves
    from jaxseq.train.run_log import find_metrics_file, read_metrics

    title = check_title(args.title, "--title") if args.title is not None else str(args.run_dir).replace("$", r"\$")
    metrics = find_metrics_file(args.run_dir)
    points = read_metrics(metrics)
    output = args.output if args.output is not None else metrics.with_name("curves.png")
    if output.is_dir():
        output = output / "curves.png"
    try:
        save_run_curves(points, output, title=title)
    except OSError as error:
        raise ValueError(f"cannot write {output} ({error.strerror or error})") from None
    except ValueError as error:
        raise ValueError(f"{metrics}: {error}") from None
    steps = max(point.step for point in points)
    print(f"wrote {output} ({len(points)} points up to step {steps} from {metrics})")
    return 0
