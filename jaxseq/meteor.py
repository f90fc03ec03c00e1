"""METEOR 1.5, coco-caption's Java scorer, in one long-lived Java process per Python process.

pycocoevalcap's `Meteor` starts the Java program (`java -jar -Xmx2G meteor-1.5.jar - - -stdio
-l en -norm`) for every scorer it makes, and that start (the JVM, then METEOR's paraphrase
and stem tables) takes about 10 s of a 2-core machine: every `coco_caption_scores` call paid it,
so a notebook scoring greedy and beam search paid it twice. Here the program starts on the
first call and answers every later one in this process; `close()` (also run at exit) ends it.

The exchange is pycocoevalcap's (`Meteor.compute_score`), so the scores are the same numbers:
per image one `SCORE ||| reference ||| ... ||| hypothesis` line, answered by that image's
statistics; then one `EVAL ||| stats ||| ...` line, answered by one score per image and then
the corpus score. The program's stderr goes to /dev/null (pycocoevalcap's unread stderr pipe
could fill and stall it). Any failure mid-exchange ends the program, so the next call starts
a fresh one instead of reading a half-answered exchange; a process forked from this one
starts its own.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import threading
from typing import Mapping, Sequence

_lock = threading.Lock()
_process: subprocess.Popen[bytes] | None = None
_owner: int | None = None  # the pid that started `_process`


def meteor_command() -> tuple[list[str], str]:
    """(the command line, the folder it runs in): pycocoevalcap's, whose folder holds the jar."""
    from pycocoevalcap.meteor import meteor as module

    folder = os.path.dirname(os.path.abspath(module.__file__))
    return ["java", "-jar", "-Xmx2G", module.METEOR_JAR, "-", "-", "-stdio", "-l", "en", "-norm"], folder


def _running() -> subprocess.Popen[bytes]:
    global _process, _owner
    if _process is not None and (_owner != os.getpid() or _process.poll() is not None):
        _forget()
    if _process is None:
        command, folder = meteor_command()
        _process = subprocess.Popen(command, cwd=folder, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                    stderr=subprocess.DEVNULL)
        _owner = os.getpid()
    return _process


def _forget() -> None:
    """End this process's METEOR program, if any (a forked child only drops its parent's)."""
    global _process, _owner
    process, owner, _process, _owner = _process, _owner, None, None
    if process is None or owner != os.getpid():
        return
    for pipe in (process.stdin, process.stdout):
        try:
            if pipe is not None:
                pipe.close()
        except OSError:
            pass
    process.kill()
    process.wait()


def close() -> None:
    """End the METEOR program this process started (the next `meteor_score` starts another)."""
    with _lock:
        _forget()


atexit.register(close)


def _read_line(process: subprocess.Popen[bytes]) -> str:
    line = process.stdout.readline() if process.stdout is not None else b""
    if not line:
        raise OSError(f"METEOR's Java program ended (exit code {process.poll()})")
    return line.decode().strip()


def _write_line(process: subprocess.Popen[bytes], line: str) -> None:
    if process.stdin is None:
        raise OSError("METEOR's Java program has no input pipe")
    process.stdin.write(f"{line}\n".encode())
    process.stdin.flush()


def meteor_score(references: Mapping, hypotheses: Mapping[object, Sequence[str]]) -> float:
    """The corpus METEOR of tokenized captions, as pycocoevalcap's `Meteor().compute_score`.

    Inputs: references: image id -> list of tokenized reference strings; hypotheses: the same
      ids -> a one-element list holding the tokenized hypothesis.
    Returns: the corpus score in [0, 1].
    Raises: OSError (no `java`, or the program ended), ValueError (an answer that is not a
      number): the caller decides whether METEOR is optional.
    """
    with _lock:
        process = _running()
        try:
            stats = []
            for key in references:
                hypothesis = hypotheses[key][0].replace("|||", "").replace("  ", " ")
                _write_line(process, " ||| ".join(("SCORE", " ||| ".join(references[key]), hypothesis)))
                stats.append(_read_line(process))
            _write_line(process, " ||| ".join(("EVAL", *stats)))
            for _ in stats:  # one score per image, then the corpus's
                float(_read_line(process))
            return float(_read_line(process))
        except BaseException:
            _forget()  # the exchange is out of step: the next call starts afresh
            raise
