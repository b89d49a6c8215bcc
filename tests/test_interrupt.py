"""Ctrl-C and SIGTERM stop a chunked sweep within about a second, keeping finished chunks.

A chunk whose device call sleeps (a ``jax.pure_callback``) stands for a long vmapped retraining
chunk; the interruption is sent from another thread once the second chunk's call is running. Without the
interruptible wait the main thread would sit in the device call until the chunk ended.
"""

from __future__ import annotations

import _thread
import os
import signal
import threading
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ntk_influence.cli import Terminated, sigterm_as_interrupt
from ntk_influence.io import ResultStore
from ntk_influence.training import call_interruptibly, map_chunks

SLEEP = 20.0  # the second chunk's device call; interruption must act long before it ends
IN_CALL = threading.Event()  # set once the second chunk's device call is running


def _sleepy(x):
    if x[0] >= 2:
        IN_CALL.set()
        time.sleep(SLEEP)
    return x


def _when_in_the_second_call(send, sent):
    """Send the interruption once the second chunk is inside its device call (not on a timer,
    so that a loaded machine cannot make it arrive before or between the calls)."""
    if not IN_CALL.wait(120.0):
        return
    time.sleep(0.1)
    sent.append(time.perf_counter())
    send()


def _chunk(chunk, args):
    slow = jax.pure_callback(_sleepy, jax.ShapeDtypeStruct(chunk.shape, chunk.dtype), chunk)
    return {"double": 2 * slow + args}


def _interrupt_main():
    _thread.interrupt_main()


@pytest.fixture
def ctrl_c_handled():
    """Python's own Ctrl-C handler for the test. A process started in the background inherits
    SIGINT ignored (``nohup``, ``cmd &`` in a script), and then Ctrl-C reaches no Python code at
    all; the tests below are about what happens when it does."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _sigterm():
    os.kill(os.getpid(), signal.SIGTERM)


# (how the run is interrupted, the exception the caller sees)
CASES = [("ctrl-c", _interrupt_main, KeyboardInterrupt), ("sigterm", _sigterm, Terminated)]


@pytest.mark.parametrize("name,send,expected", CASES, ids=[c[0] for c in CASES])
def test_interruption_stops_a_sweep_mid_chunk(name, send, expected, tmp_path, ctrl_c_handled):
    store = ResultStore(tmp_path / "store")
    sent: list[float] = []
    IN_CALL.clear()
    threading.Thread(target=_when_in_the_second_call, args=(send, sent), daemon=True).start()
    with sigterm_as_interrupt(), pytest.raises(expected):
        map_chunks(_chunk, np.arange(4, dtype=np.int32), chunk_size=2, args=jnp.int32(1),
                   store=store, show_progress=False)
    stopped = time.perf_counter()
    assert sent, "interrupted before the first chunk was saved"
    assert stopped - sent[0] < SLEEP / 4  # not at the end of the sleeping chunk
    assert store.keys() == ["chunk_0"]  # the finished chunk is kept, the cut one is not
    np.testing.assert_array_equal(store.load("chunk_0")["double"], [1, 3])


def test_interruptible_call_returns_and_raises_like_the_call():
    assert call_interruptibly(lambda: 7) == 7
    with pytest.raises(ZeroDivisionError):
        call_interruptibly(lambda: 1 / 0)
    # the caller's 64-bit mode holds inside the helper thread (JAX keeps it per thread)
    for flag in (True, False):
        with jax.enable_x64(flag):
            assert call_interruptibly(lambda: jnp.zeros(1, float).dtype) == (
                np.float64 if flag else np.float32)


def test_cli_exits_130_with_its_message_when_a_chunk_is_cut(tmp_path, capsys, monkeypatch):
    import ntk_influence.experiments._compare as compare_module
    from ntk_influence.cli import main

    def sleepy_width(*a, store=None, **kw):
        map_chunks(_chunk, np.arange(4, dtype=np.int32), chunk_size=2, args=jnp.int32(1),
                   store=store, show_progress=False)
        raise AssertionError("the sweep was not interrupted")

    monkeypatch.setattr(compare_module, "compare_width", sleepy_width)
    first = tmp_path / "c" / "retrain_16" / "item_chunk_0.npz"
    sent: list[float] = []
    IN_CALL.clear()
    threading.Thread(target=_when_in_the_second_call, args=(_sigterm, sent),
                     daemon=True).start()
    code = main(["compare", "--n-train", "16", "--n-test", "4", "--widths", "16",
                 "--n-points", "4", "--out", str(tmp_path / "c"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 130 and "terminated (SIGTERM)" in err and "--resume" in err, err
    assert sent and time.perf_counter() - sent[0] < SLEEP / 4
    assert first.exists() and not first.with_name("item_chunk_1.npz").exists()


def test_ctrl_c_stops_a_long_training(monkeypatch, ctrl_c_handled):
    """A training is one long device call too: Ctrl-C reaches the caller within about a second,
    not when the (here some ten seconds long) gradient-descent run ends."""
    import ntk_influence.training._train as train
    from ntk_influence import nets
    from ntk_influence import training as chunks

    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 5))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    net = nets.two_layer_net(5, 16, seed=0)
    s = train.SolverSettings("gd", f_tol=1e-300, max_steps=2_000_000)  # never converges
    started = threading.Event()

    def spied(fn, **kw):  # mark the moment the solve starts in its thread
        def run():
            started.set()
            return fn()
        return chunks.call_interruptibly(run, **kw)

    monkeypatch.setattr(train, "call_interruptibly", spied)
    sent: list[float] = []

    def interrupter():
        if started.wait(120.0):
            time.sleep(0.5)  # inside the compiled solve
            sent.append(time.perf_counter())
            _thread.interrupt_main()

    threading.Thread(target=interrupter, daemon=True).start()
    with pytest.raises(KeyboardInterrupt):
        train.train(net, x, np.sign(x[:, 0]), 0.1, settings=s, warn=False)
    stopped = time.perf_counter()
    assert sent and stopped - sent[0] < 1.5
