"""runtime/stopping.py: what stops `--serve` and `wvwasi serve` (real signals, a real pipe)."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from wvwasi.runtime.stopping import SIGNALS, stop_at_end_of_stdin, stop_on_signals, wait


@pytest.mark.parametrize("sig", SIGNALS)
def test_a_signal_sets_the_stop_and_the_old_handlers_come_back(sig: signal.Signals) -> None:
    before = {s: signal.getsignal(s) for s in SIGNALS}
    with stop_on_signals() as stop:
        assert not stop.is_set()
        os.kill(os.getpid(), sig)  # without the handler: KeyboardInterrupt or the process ends
        wait(stop)  # returns: the handler set it
    assert {s: signal.getsignal(s) for s in SIGNALS} == before


def test_the_end_of_a_piped_stdin_sets_the_stop() -> None:
    read, write = os.pipe()
    with os.fdopen(read, "r") as stream:
        stop = threading.Event()
        stop_at_end_of_stdin(stop, stream)
        os.write(write, b"anything before the end is read and dropped\n")
        assert not stop.wait(0.2)
        os.close(write)
        assert stop.wait(10)


def test_a_stdin_that_is_not_a_pipe_never_stops_it(tmp_path) -> None:
    (tmp_path / "in").write_text("")
    with open(tmp_path / "in") as stream:  # a file at its end: not the parent going away
        stop = threading.Event()
        stop_at_end_of_stdin(stop, stream)
        assert not stop.wait(0.3)
