"""The one chunk runner: a batched function over many items, in chunks, resumable, on devices.

:func:`map_chunks` splits ``(m, ...)`` items into chunks of ``chunk_size``, runs a jit-compiled
function on each chunk (one device: one chunk at a time; a mesh: one chunk per device per round,
the chunk axis sharded over the mesh), shows progress, and saves each finished chunk to a
:class:`~ntk_influence.io.ResultStore` at once, so an interrupted sweep resumes where it stopped.
Each chunk's device call runs in a helper thread that the caller waits on in short steps
(:func:`call_interruptibly`), so Ctrl-C (and SIGTERM, which the command line turns into an
interruption) stops a sweep within a fraction of a second instead of when the chunk ends.
Retraining (:func:`~ntk_influence.training.retrain_without`) runs through it. The compiled
program of a chunk function is kept on that function, so it is built once and freed with it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import types
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

from .._precision import precision
from ..errors import InputError
from ..io import ResultStore, progress

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class ChunkMapResult:
    """Results of :func:`map_chunks`, in the order of the items.

    Attributes:
      items: the items (an array, or a dict of arrays sharing the leading axis).
      outputs: name -> ``(m, ...)`` array gathered from every chunk.
      chunk_size: items per chunk (one chunk per device per round on a mesh).
      n_devices: devices used.
      computed_chunks: chunks computed by this call (the others were loaded from the store).
      total_chunks: chunks in all.
    """

    items: Any
    outputs: dict[str, np.ndarray]
    chunk_size: int
    n_devices: int
    computed_chunks: int
    total_chunks: int


def items_digest(items: Any) -> str:
    """SHA-256 of the items' bytes, shapes and dtypes, recorded with a store to refuse mixing.

    Args:
      items: an array or a dict of arrays.

    Returns:
      Hex digest.
    """
    h = hashlib.sha256()
    for k, v in _as_dict(items).items():
        a = np.ascontiguousarray(v)
        h.update(f"{k}|{a.shape}|{a.dtype.str}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


_PENDING: list[type[BaseException]] = []


def request_interrupt(kind: type[BaseException] = KeyboardInterrupt) -> None:
    """Record an interruption that every later :func:`call_interruptibly` raises until cleared.

    A signal handler's own exception is lost when the signal lands while Python runs a garbage
    collector callback (the exception is printed and ignored); a handler that also records it
    here is sure to stop the sweep at its next wait.

    Args:
      kind: the exception class to raise (``KeyboardInterrupt`` or a subclass).

    Returns:
      None.
    """
    _PENDING[:] = [kind]


def clear_interrupt() -> None:
    """Forget an interruption recorded by :func:`request_interrupt`.

    Returns:
      None.
    """
    _PENDING.clear()


def call_interruptibly(fn: Callable[[], T], poll_seconds: float = 0.1) -> T:
    """Run ``fn()`` in a helper thread while the calling thread waits in short steps.

    A device call (one jit-compiled chunk) blocks in C++, where Python's signal handlers do not
    run: Ctrl-C would act only when the call returns. Waiting here instead lets
    ``KeyboardInterrupt`` (and any exception a signal handler raises) reach the caller within
    ``poll_seconds``; the abandoned call finishes in the background and its result is dropped.
    A device call cannot be cancelled, so the thread is not a daemon: at exit the interpreter
    waits for it rather than kill a thread inside XLA (which aborts the process).
    An interruption recorded by :func:`request_interrupt` is raised too.
    The caller's JAX 64-bit mode (a thread-local setting) is carried into the thread. Called
    from a thread other than the main one, ``fn`` simply runs there.

    Args:
      fn: the call, with no arguments.
      poll_seconds: how often the waiting thread checks for signals.

    Returns:
      What ``fn`` returns; an exception it raises is raised here.
    """
    if threading.current_thread() is not threading.main_thread():
        return fn()
    if _PENDING:
        raise _PENDING[0]
    dtype = np.float64 if jax.config.jax_enable_x64 else np.float32
    box: dict[str, Any] = {}
    done = threading.Event()

    def target() -> None:
        try:
            with precision(dtype):
                box["value"] = fn()
        except BaseException as e:  # handed to the caller below
            box["error"] = e
        finally:
            done.set()

    worker = threading.Thread(target=target, name="ntk-influence-call", daemon=False)
    worker.start()
    # wait on an event, not Thread.join: a KeyboardInterrupt inside join() can mark a running
    # thread as stopped, and the interpreter would then not wait for it at exit
    while not done.wait(poll_seconds):
        if _PENDING:
            raise _PENDING[0]
    if "error" in box:
        raise box["error"]
    return box["value"]


def _as_dict(items: Any) -> dict[str, np.ndarray]:
    if isinstance(items, dict):
        return {str(k): np.asarray(v) for k, v in items.items()}
    return {"items": np.asarray(items)}


_PROGRAMS = "_map_chunks_programs"


def _compiled(fn: Callable[..., Any], mesh: Mesh | None) -> Callable[..., Any]:
    """``fn`` under ``jit`` (vmapped and sharded over ``mesh``), kept on ``fn`` per mesh.

    The compiled program is stored in ``fn``'s own attributes, so it is built once per
    ``(fn, mesh)`` and freed with ``fn``; a bound method or callable object without attributes
    of its own is compiled afresh on each call.
    """
    programs = _own_programs(fn)
    if mesh not in programs:
        if mesh is None:
            programs[mesh] = jax.jit(fn)
        else:
            sh, rep = NamedSharding(mesh, P(mesh.axis_names[0])), NamedSharding(mesh, P())
            programs[mesh] = jax.jit(jax.vmap(fn, in_axes=(0, None)), in_shardings=(sh, rep),
                                     out_shardings=sh)
    return programs[mesh]


def _own_programs(fn: Callable[..., Any]) -> dict[Mesh | None, Any]:
    """The dict of compiled programs stored on ``fn`` (a fresh, unstored one if it cannot be)."""
    if isinstance(fn, types.MethodType) or not hasattr(fn, "__dict__"):
        return {}  # a method's attributes are its function's, shared by every instance
    try:
        return fn.__dict__.setdefault(_PROGRAMS, {})
    except (AttributeError, TypeError):
        return {}


def map_chunks(fn: Callable[..., dict[str, jax.Array]], items: Any, *, chunk_size: int,
               args: Any = (), mesh: Mesh | None = None,
               store: str | os.PathLike[str] | ResultStore | None = None,
               meta: dict[str, Any] | None = None, show_progress: bool = True,
               desc: str = "chunks", prefix: str = "chunk",
               prepare: Callable[[dict[str, np.ndarray]], dict[str, Any]] | None = None
               ) -> ChunkMapResult:
    """Run ``fn`` on chunks of ``items``, on one device or with the chunk axis over a mesh.

    ``fn(chunk, args)`` maps a chunk (``(chunk_size, ...)`` arrays, or a dict of them) and the
    shared ``args`` (any pytree, passed unbatched and replicated) to ``{name: (chunk_size, ...)}``.
    With ``mesh=None`` each chunk runs under ``jit`` on the default device. With a mesh, each round
    stacks one chunk per device, ``(devices, chunk_size, ...)``, shards that axis over the mesh
    and runs ``jax.vmap(fn)`` under ``jit``. The compiled function is kept on ``fn`` per mesh
    (built once, freed with ``fn``). The last chunk is padded with copies of its first item,
    which are dropped. Each chunk's outputs are saved to ``store`` (key ``f"{prefix}_{i}"``) as
    soon as it finishes; a later call with the same store skips those chunks, after checking
    they hold the same items.

    Args:
      fn: jit-able ``(chunk, args) -> {name: array}``.
      items: ``(m, ...)`` array, or a dict of arrays with the same leading axis ``m``.
      chunk_size: items per chunk.
      args: arguments shared by every chunk.
      mesh: device mesh; ``None`` runs on one device.
      store: a folder or :class:`~ntk_influence.io.ResultStore` for the finished chunks.
      meta: settings recorded with a store created from a folder (a store made with other
        settings is refused).
      show_progress: progress bar on stderr.
      desc: progress label.
      prefix: key prefix of the chunks in the store (distinct passes use distinct prefixes).
      prepare: host-side ``(chunk) -> {name: (chunk_size, ...) arrays or pytrees}`` run on each
        (padded) chunk of a dict of items just before its device call and merged into it: inputs
        derived from the items (such as a fresh initialisation per seed) that are neither kept
        in the store nor compared on resume.

    Returns:
      :class:`ChunkMapResult`.
    """
    its = _as_dict(items)
    if prepare is not None and not isinstance(items, dict):
        raise InputError("prepare= needs the items as a dict of arrays.")
    sizes = {v.shape[0] if v.ndim else -1 for v in its.values()}
    if len(sizes) != 1 or min(sizes) < 1:
        raise InputError("items must be a non-empty array (or dict of arrays) with the items "
                         "along axis 0.")
    m = sizes.pop()
    cs = int(chunk_size)
    if cs < 1:
        raise InputError(f"chunk_size must be >= 1, got {chunk_size}.")
    nd = 1 if mesh is None else int(mesh.devices.size)
    if isinstance(store, (str, os.PathLike)):
        store = ResultStore(store, meta={"chunk_size": cs, "items_sha256": items_digest(items),
                                         **(meta or {})})
    plain = not isinstance(items, dict)
    chunks = [{k: v[s:s + cs] for k, v in its.items()} for s in range(0, m, cs)]
    key = [f"{prefix}_{i}" for i in range(len(chunks))]
    todo = [i for i in range(len(chunks)) if store is None or not store.done(key[i])]
    run = _compiled(fn, mesh)
    results: dict[int, dict[str, np.ndarray]] = {}
    rounds = [todo[r:r + nd] for r in range(0, len(todo), nd)]

    def pad(c: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: np.concatenate([v, np.repeat(v[:1], cs - v.shape[0], axis=0)])
                if v.shape[0] < cs else v for k, v in c.items()}

    def unwrap(c: dict[str, np.ndarray]) -> Any:
        return c["items"] if plain else c

    for rnd in progress(rounds, total=len(rounds), desc=desc, enabled=show_progress):
        stack = [pad(chunks[ci]) for ci in rnd]
        if prepare is not None:
            stack = [{**c, **prepare(c)} for c in stack]
        if mesh is None:
            one = unwrap(stack[0])
            host = call_interruptibly(
                lambda one=one: {k: np.asarray(v)[None] for k, v in run(one, args).items()})
        else:
            while len(stack) < nd:  # idle devices get a copy of the first chunk, dropped below
                stack.append(stack[0])
            batch = unwrap({k: jax.tree.map(lambda *v: np.stack(v), *[c[k] for c in stack])
                            for k in stack[0]})
            host = call_interruptibly(
                lambda batch=batch: {k: np.asarray(v) for k, v in run(batch, args).items()})
        for j, ci in enumerate(rnd):
            size = next(iter(chunks[ci].values())).shape[0]
            got = {k: v[j, :size] for k, v in host.items()}
            results[ci] = got
            if store is not None:
                store.save(key[ci], **{f"item_{k}": v for k, v in chunks[ci].items()}, **got)
    for ci in range(len(chunks)):
        if ci not in results:
            got = store.load(key[ci])  # type: ignore[union-attr]
            saved = {k[len("item_"):]: got.pop(k) for k in list(got) if k.startswith("item_")}
            if saved.keys() != chunks[ci].keys() or not all(
                    np.array_equal(saved[k], chunks[ci][k]) for k in saved):
                raise InputError(f"{store.root} {key[ci]} holds other items; use another "  # type: ignore[union-attr]
                                 "folder or resume=False.")
            results[ci] = got
    names = list(results[0])
    outputs = {k: np.concatenate([results[ci][k] for ci in range(len(chunks))]) for k in names}
    return ChunkMapResult(items, outputs, cs, nd, sum(len(r) for r in rounds), len(chunks))
