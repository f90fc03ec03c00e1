"""`jaxseq.train.interrupt`: SIGTERM / SIGINT become a stop request inside the block, a second
signal acts at once, and outside the block (or where disabled) nothing changes. The trainers'
use of it is tested end to end in tests/test_resume.py, and the agreement of several
processes in tests/test_parallel.py."""

from __future__ import annotations

import signal
import threading

import pytest

from jaxseq.train.interrupt import StoppedAtOnce, TrainingInterrupted, stop_on_signals


def test_a_signal_inside_the_block_is_a_request_and_handlers_come_back():
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    with stop_on_signals() as stop:
        assert stop.requested is None and stop.poll(7) is None
        signal.raise_signal(signal.SIGTERM)  # would end the test process without the block
        assert stop.requested == "SIGTERM"
        assert stop.poll(7) == "SIGTERM"  # one process: at every step, no exchange needed
    assert {s: signal.getsignal(s) for s in before} == before


def test_a_second_signal_acts_at_once_with_the_previous_handler():
    with pytest.raises(KeyboardInterrupt):
        with stop_on_signals() as stop:
            signal.raise_signal(signal.SIGINT)
            assert stop.requested == "SIGINT"
            signal.raise_signal(signal.SIGINT)  # Ctrl-C twice
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_disabled_or_off_the_main_thread_nothing_changes():
    with stop_on_signals(enabled=False):
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    seen = []

    def worker():
        with stop_on_signals() as stop:
            seen.append((signal.getsignal(signal.SIGINT), stop.requested))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == [(signal.default_int_handler, None)]


def test_training_interrupted_says_where_and_exits_as_the_signal():
    stopped = TrainingInterrupted("SIGTERM", 45, "runs/x/ckpt-00000045")
    assert stopped.exit_code == 143 and TrainingInterrupted("SIGINT", 1, None).exit_code == 130
    assert str(stopped) == "stopped by SIGTERM after step 45; checkpoint runs/x/ckpt-00000045 written; continue with --resume"


def test_a_second_ctrl_c_says_what_it_left_behind():
    with pytest.raises(StoppedAtOnce, match="stopped at once by a second SIGINT; a checkpoint being written was "
                                            "abandoned, the checkpoints written before are kept") as stopped:
        with stop_on_signals():
            signal.raise_signal(signal.SIGINT)
            signal.raise_signal(signal.SIGINT)
    assert isinstance(stopped.value, KeyboardInterrupt)  # a notebook's `except KeyboardInterrupt` still catches it
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
