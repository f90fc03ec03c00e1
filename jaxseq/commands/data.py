"""`jaxseq data download coco|cola`: fetch a data set into the data root.

The download is streamed with a progress bar, resumable (run the same command again after
an interruption), checksummed (the SHA-256 is printed; `--sha256` verifies it) and unpacked
atomically, within the data set's size and compression-ratio limits. `--url` must be an
http(s) URL. The data root is `--root`, else `$JAXSEQ_DATA`, else `~/.cache/jaxseq`: where
the loaders look (`jaxseq.data.locations`), so `cola train` and `caption train --data coco`
find what was downloaded. The download itself is bounded (`--max-bytes`, `--stall-bytes` /
`--stall-window`, `--deadline`; the defaults come from the data set, see `jaxseq.data.download`).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from jaxseq.commands._options import bounded_int, positive_float

# Kept literal so that `jaxseq --help` does not import the downloader; a test checks it
# matches `jaxseq.data.download.DATASETS`.
DATASET_NAMES = ("coco", "cola")


def _sha256_arg(value: str) -> str:
    text = value.strip().lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise argparse.ArgumentTypeError(f"expected 64 hexadecimal digits, got {value!r}")
    return text


def register(subparsers) -> None:
    parser = subparsers.add_parser("data", help="download data sets (COCO captioning, CoLA)")
    actions = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    download = actions.add_parser(
        "download",
        help="download and unpack a data set",
        description="Download and unpack a data set into the data root "
                    "(--root, else $JAXSEQ_DATA, else ~/.cache/jaxseq). Interrupted "
                    "downloads resume when the command is run again.",
    )
    download.add_argument("dataset", choices=DATASET_NAMES,
                          help="coco: the course's COCO captioning HDF5 files "
                               "(-> ROOT/coco_captioning); cola: CoLA 1.1 (-> ROOT/cola)")
    download.add_argument("--root", type=Path, default=None,
                          help="data root folder (default: $JAXSEQ_DATA or ~/.cache/jaxseq)")
    download.add_argument("--url", default=None,
                          help="download from this http(s) URL instead (a mirror or local server)")
    download.add_argument("--sha256", type=_sha256_arg, default=None, metavar="HEX",
                          help="expected SHA-256 of the zip; a mismatch is an error")
    download.add_argument("--force", action="store_true",
                          help="download and unpack again even if the data is present")
    download.add_argument("--no-progress", action="store_true",
                          help="no progress bar")
    bounds = download.add_argument_group("bounds (a server that lies or crawls is given up)")
    bounds.add_argument("--max-bytes", type=bounded_int(1, 2**63 - 1, "a positive integer"), default=None,
                        metavar="N", help="refuse a zip larger than N bytes (default: twice the data set's "
                                          "known archive size)")
    bounds.add_argument("--stall-bytes", type=bounded_int(0, 2**63 - 1, "an integer >= 0"), default=None,
                        metavar="N", help="give up when fewer than N bytes arrive in a --stall-window "
                                          "(default: 16,384)")
    bounds.add_argument("--stall-window", type=positive_float, default=None, metavar="SECONDS",
                        help="the stall rule's window (default: 60)")
    bounds.add_argument("--deadline", type=positive_float, default=None, metavar="SECONDS",
                        help="give up after this long, retries included (default: 600 plus the time "
                             "--max-bytes takes at 100 kB/s)")
    download.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from jaxseq.data.download import check_url, download_dataset, read_download_record

    if args.url is not None:
        check_url(args.url, "--url")  # a ValueError: `jaxseq` prints it as one line
    try:
        path = download_dataset(
            args.dataset,
            root=args.root,
            url=args.url,
            expected_sha256=args.sha256,
            force=args.force,
            progress=not args.no_progress,
            max_bytes=args.max_bytes,
            stall_bytes=args.stall_bytes,
            stall_window=args.stall_window,
            deadline=args.deadline,
        )
    except KeyboardInterrupt:
        print("jaxseq data download: interrupted; run the same command again to resume",
              file=sys.stderr)
        return 130
    except OSError as error:  # DownloadError (HTTP status, unreachable, lost), disk errors
        print(f"jaxseq data download: error: {error}", file=sys.stderr)
        return 1
    print(f"{args.dataset} data is in {path}")
    record = read_download_record(path)
    if record and record.get("sha256"):
        print(f"sha256 of {record.get('archive', 'the archive')}: {record['sha256']}")
    return 0
