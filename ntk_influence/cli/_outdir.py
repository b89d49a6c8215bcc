"""The output folder of a run: checked before any work, locked while the run lasts, fingerprinted.

- ``--out`` must be (or be creatable as) a writable folder; an empty path, a file, a path under
  a file or a read-only place is refused before anything is computed, and so is a read-only
  result file in it (``summary.json``...) or a work folder in it (``work``, ``retrain_*``) that
  is a symbolic link: nothing is written outside ``--out``.
- ``DIR/.ntk-influence.lock`` holds the pid of the run using ``DIR`` under an exclusive
  ``flock``; a second run into ``DIR`` is refused and names that pid. The kernel drops the lock
  when its holder dies, so a lock file left by a killed run is taken over. The lock is opened
  without following symbolic links; a symbolic link in its place is refused.
- ``DIR/fingerprint.json`` records everything that determines the folder's content: the command,
  its settings (data spec, sizes, seeds, lam, widths, solver options...), a SHA-256 of the data
  arrays and the library's version. ``--resume`` into a folder with another fingerprint is
  refused (exit 2) with the settings that differ; ``--force`` starts afresh instead. Results
  without a readable fingerprint are never reused: ``--resume`` then computes afresh, saying so.
- Under ``--resume`` the temporary files of a killed run are removed: only names the library's
  atomic writes make (:func:`ntk_influence.io.is_partial_file`).

:func:`load_data_from_args` loads a subcommand's data and claims ``--out`` for it;
:func:`run_in_folder` runs a subcommand inside its checked and locked folder.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import fnmatch
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import InputError
from ..io import (
    data_hash,
    jsonable,
    load_json,
    remove_partial_files,
    save_json,
    settings_differences,
)
from ._common import log, settings_of

LOCK_NAME = ".ntk-influence.lock"
FINGERPRINT_NAME = "fingerprint.json"
NOT_CONTENT = ("out", "resume", "quiet", "force", "config", "parts", "skip", "keep_going",
               "dry_run", "pool_sizes", "pool_outputs", "overlay")
"""Options that say how a run is done or shown, not what it computes (left out of fingerprints)."""
WORK_FOLDERS = ("work", "retrain", "retrain_*", "trials")
"""Folders inside ``--out`` where finished pieces are kept (refused when a symbolic link)."""
RESULT_SUFFIXES = (".json", ".npz", ".png", ".md", ".csv")
"""Files of these kinds in ``--out`` are results a run rewrites (refused when read-only)."""


def check_out_dir(out: str | os.PathLike[str]) -> Path:
    """Check that ``out`` is, or can be made, a writable folder, and create it.

    Args:
      out: the ``--out`` path.

    Returns:
      The folder.
    """
    if not str(out).strip():
        raise InputError("--out is empty; pass a folder path (e.g. --out results/run1).")
    p = Path(out)
    if p.exists() and not p.is_dir():
        raise InputError(f"--out {p} is a file, not a folder; pass a folder path.")
    top = p
    while not top.exists() and top != top.parent:
        top = top.parent
    if not top.is_dir():
        raise InputError(f"--out {p} lies under {top}, which is a file, not a folder.")
    if not os.access(top, os.W_OK | os.X_OK):
        raise InputError(f"--out {p}: {top} is not writable; pass a folder you can write to.")
    try:
        p.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"--out {p} cannot be created ({e.strerror}).") from e
    return p


def _holder(fd: int) -> str:
    os.lseek(fd, 0, os.SEEK_SET)
    return os.read(fd, 64).decode(errors="replace").strip()


@contextlib.contextmanager
def folder_lock(folder: Path, args: argparse.Namespace | None = None) -> Iterator[None]:
    """Hold ``folder``'s lock file for the length of the block.

    Args:
      folder: the output folder (it exists).
      args: parsed arguments, for the progress message when a stale lock is taken over.

    Returns:
      A context manager; the lock file is removed on exit.
    """
    path = folder / LOCK_NAME
    while True:
        fd = _open_lock(path, folder)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            pid = _holder(fd) or "unknown"
            os.close(fd)
            raise InputError(f"{folder} is in use by another run (pid {pid}); wait for it to end "
                             "or use another --out.") from None
        try:  # the file may have been removed by its previous holder meanwhile: lock it afresh
            same = os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    stale = _holder(fd)
    if stale and args is not None:
        log(args, f"took over the lock of pid {stale}, which is no longer running")
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, f"{os.getpid()}\n".encode())
    try:
        yield
    finally:
        with contextlib.suppress(OSError):  # remove the lock only if it is still this one
            if os.stat(path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino:
                os.unlink(path)
        os.close(fd)


def _open_lock(path: Path, folder: Path) -> int:
    """Open the lock file without following links: an existing regular file, or a new one."""
    nofollow = os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0) | os.O_NONBLOCK
    while True:
        try:
            try:
                fd = os.open(path, os.O_RDWR | nofollow)
            except FileNotFoundError:
                try:
                    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | nofollow, 0o644)
                except FileExistsError:
                    continue  # another run created it meanwhile: open that one
        except OSError as e:
            if e.errno == errno.ELOOP or path.is_symlink():
                raise InputError(f"{path} is a symbolic link; a run locks only a regular file "
                                 "inside --out: remove the link.") from e
            raise InputError(f"--out {folder} is not writable ({e.strerror}).") from e
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise InputError(f"{path} is not a regular file; remove it.")
        return fd


def check_contents(folder: Path, work: tuple[str, ...] = WORK_FOLDERS) -> None:
    """Refuse, before any work, what would make a run write outside ``folder`` or fail late.

    A work folder (:data:`WORK_FOLDERS`) that is a symbolic link would send results (and the
    removal of stale ones) elsewhere; a read-only result file would be rewritten against its
    owner's wish, or fail after the work.

    Args:
      folder: the output folder (it exists).
      work: name patterns of the work folders.

    Raises:
      InputError: naming the link or the read-only file.
    """
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if any(fnmatch.fnmatchcase(name, w) for w in work) and entry.is_symlink():
            raise InputError(f"{entry} is a symbolic link (to {os.readlink(entry)}); results are "
                             "written only inside --out: remove the link.")
        if name.endswith(RESULT_SUFFIXES) and not entry.is_symlink() and entry.is_file():
            mode = entry.stat().st_mode
            if not mode & stat.S_IWUSR or not os.access(entry, os.W_OK):
                raise InputError(f"{entry} is read-only; make it writable (chmod u+w) or use "
                                 "another --out.")


def fingerprint(args: argparse.Namespace, data: Any, per_piece: tuple[str, ...] = ()
                ) -> dict[str, Any]:
    """What determines the content of a run's folder.

    Args:
      args: parsed arguments.
      data: the :class:`~ntk_influence.data.Dataset` the run uses.
      per_piece: settings left out because each stored piece records and checks its own
        (``compare``'s ``widths``: one file per width, each with its full settings).

    Returns:
      ``command``, ``version``, ``data_sha256`` and every content setting, as plain JSON.
    """
    settings = {k: v for k, v in settings_of(args).items()
                if k not in NOT_CONTENT and k not in per_piece}
    return jsonable({**settings, "version": __version__,
                     "data_sha256": data_hash(data.x_train, data.y_train, data.x_test,
                                              data.y_test)})


def claim_output(args: argparse.Namespace, data: Any, restart: bool = True,
                 per_piece: tuple[str, ...] = ()) -> None:
    """Check ``--out``'s fingerprint against this run's and record this run's.

    Under ``--resume``, a folder fingerprinted with other settings is refused (InputError, exit 2)
    unless ``--force``, which starts afresh (``args.resume`` is set to False when ``restart``).

    Args:
      args: parsed arguments (``out``, ``resume``, ``force``).
      data: the dataset the run uses.
      restart: with ``--force``, turn ``--resume`` off (False: the command checks its pieces).
      per_piece: settings each stored piece checks itself, left out of the comparison (a
        ``compare`` sweep may add or drop widths under ``--resume``).
    """
    out = Path(args.out)
    path = out / FINGERPRINT_NAME
    new = fingerprint(args, data, per_piece)
    if args.resume:
        old = _stored_fingerprint(path)
        if old is not None:
            old = {k: v for k, v in old.items() if k not in per_piece}
        if old is None:
            if _has_results(out):
                log(args, f"{out} has no readable {FINGERPRINT_NAME}: its results cannot be "
                          "checked against this run's settings and data; computing afresh")
                args.resume = False
        elif old != new:
            diff = settings_differences(old, new)
            if not getattr(args, "force", False):
                raise InputError(f"{out} holds results of other settings ({diff}); use a new "
                                 "--out, or --force to start afresh.")
            log(args, f"{out} holds results of other settings ({diff}); starting afresh (--force)")
            if restart:
                args.resume = False
    save_json(path, new)


def _stored_fingerprint(path: Path) -> dict[str, Any] | None:
    """The recorded fingerprint, or None when it is missing, damaged or not a regular file."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        old = load_json(path)
    except (OSError, ValueError):
        return None
    return old if isinstance(old, dict) and "data_sha256" in old else None


def _has_results(out: Path) -> bool:
    """Whether ``out`` holds anything besides the lock (results a resume could reuse)."""
    return any(p.name != LOCK_NAME for p in out.iterdir())


def load_data_from_args(args: argparse.Namespace, per_piece: tuple[str, ...] = ()) -> Any:
    """Load the :class:`Dataset` the data options describe and claim ``--out`` for it.

    The folder's fingerprint is checked against this run's settings and data (a ``--resume``
    into a folder of other settings is refused) and then recorded.

    Args:
      args: parsed arguments with the data options of ``_common.add_data_arguments``.
      per_piece: settings each stored piece checks itself (:func:`claim_output`).

    Returns:
      The :class:`~ntk_influence.data.Dataset`.
    """
    # deferred for start-up speed
    from ..data import load_dataset

    ds = load_dataset(args.data, n_train=args.n_train, n_test=args.n_test, seed=args.seed,
                      label_noise=args.label_noise, center=args.center)
    claim_output(args, ds, per_piece=per_piece)
    return ds


def run_in_folder(args: argparse.Namespace, func: Callable[[argparse.Namespace], Path]) -> Path:
    """Run a subcommand with its output folder checked, locked and (under ``--resume``) cleaned.

    Args:
      args: parsed arguments.
      func: the subcommand's runner.

    Returns:
      What ``func`` returns (the output folder).
    """
    folder = check_out_dir(args.out)
    with folder_lock(folder, args):
        check_contents(folder)
        if args.resume:
            n = remove_partial_files(folder)
            if n:
                log(args, f"removed {n} partial file(s) an interrupted run left in {folder}")
        return func(args)
