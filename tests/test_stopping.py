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


#: Run as a script: the `wvwasi` command (its entry point, wvwasi.__main__.run) that sends itself
#: SIGINT on the main thread's Nth call into wvwasi's own code (WVWASI_SIGINT_AT; 0 never), so a
#: test can stop it at chosen points with a real signal; on exit it reports on stderr how many
#: calls it counted. Before its first call (the interpreter starting, `import wvwasi`) no
#: handler of ours can exist.
_AT_CALL = """
import os, signal, sys, threading
roots = tuple(os.environ["WVWASI_CODE"].split(os.pathsep))
at, calls = int(os.environ["WVWASI_SIGINT_AT"]), 0
def count(frame, event, arg):
    global calls
    if event == "call" and frame.f_code.co_filename.startswith(roots) \\
            and threading.current_thread() is threading.main_thread():
        calls += 1
        if calls == at:
            os.kill(os.getpid(), signal.SIGINT)
import wvwasi.__main__
sys.setprofile(count)
status = wvwasi.__main__.run()
sys.setprofile(None)
print(f"calls: {calls}", file=sys.stderr)
sys.exit(status)
"""


def test_ctrl_c_at_any_point_of_wvwasi_serve_start_up_exits_cleanly(make_project, tmp_path):
    """SIGINT on the Nth call into wvwasi's code, for N spread over the whole start-up of
    `wvwasi serve` (a background service compiling, the bridge starting) and its shutdown after
    a first Ctrl+C: never a traceback; 130 before it served, `Stopped.` and 0 after; no temp
    folder and no process left."""
    import subprocess
    import sys
    from pathlib import Path

    import wvwasi
    import wvwasi.packager
    import wvwasi.runtime

    project = make_project({"wc": {"source": "wc"}, "spin": {"source": "loop",
                                                            "kind": "background"}})
    code = os.pathsep.join(str(Path(m.__file__).parent) + os.sep
                           for m in (wvwasi, wvwasi.runtime, wvwasi.packager))
    (tmp_path / "at_call.py").write_text(_AT_CALL)

    def serve(at: int) -> tuple[int, str, str]:
        temp = tmp_path / f"tmp-{at}"
        temp.mkdir()
        env = {**os.environ, "WVWASI_CODE": code, "WVWASI_SIGINT_AT": str(at),
               "TMPDIR": str(temp), "WVWASI_CACHE_DIR": str(tmp_path / "cache"),
               "XDG_DATA_HOME": str(tmp_path / "data"), "XDG_CACHE_HOME": str(tmp_path / "xc")}
        proc = subprocess.Popen([sys.executable, tmp_path / "at_call.py", "serve", project],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True)
        try:
            first = proc.stdout.readline()
            if first.startswith("Serving Test App at "):  # up: stopped as a user would (a
                proc.send_signal(signal.SIGINT)  # call N after this one is a second Ctrl+C)
            out, err = proc.communicate(timeout=60)
            out = first + out
        finally:
            proc.kill()
        with pytest.raises(ProcessLookupError):  # nothing it started outlives it
            os.killpg(proc.pid, 0)
        assert list(temp.iterdir()) == [], at  # its temp folders are gone
        return proc.returncode, out, err

    status, _, err = serve(0)  # counts the calls of a start and a stop
    assert status == 0 and "Traceback" not in err, err
    calls = int(err.rsplit("calls: ", 1)[1])
    # call 1 is run() itself, signalled before its first line: before any handler of ours
    for at in sorted({2, 4, *(calls * k // 4 for k in range(1, 4)), calls - 1}):
        status, out, err = serve(at)
        assert "Traceback" not in err and "Exception" not in err, (at, err)
        if "Serving" in out:
            assert (status, out.splitlines()[-1]) == (0, "Stopped."), (at, out)
        else:
            assert status == 130, (at, status, err)
