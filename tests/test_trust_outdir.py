"""Output folders are trusted only as far as they can be checked.

Nothing is written outside ``--out`` (symbolic links in its place are refused), no stale result
is reused (a result without a fingerprint, or a reproduce part whose data changed, is computed
again) and damaged state (a truncated item, a corrupt ``meta.json``/``summary.json``/
``part.json``) is computed again with a one-line message, never a traceback.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest

import ntk_influence as ni
from ntk_influence.cli import EXIT_OK, EXIT_USAGE, main
from ntk_influence.cli import reproduce as rep
from ntk_influence.errors import InputError, ResumeWarning
from ntk_influence.io import ResultStore, is_partial_file, remove_partial_files

SMALL = ["--data", "digits:3,8", "--n-train", "20", "--n-test", "5"]


def _run(argv, capsys):
    code = main([str(a) for a in argv])
    got = capsys.readouterr()
    return code, got.out, got.err


def _no_traceback(err):
    assert "Traceback" not in err, err


def _npz_data(path, flip=False):
    """Nine training and three test points in an ``.npz``; ``flip`` reorders the training set."""
    x = ni.data.unit_normalize(np.random.default_rng(0).normal(size=(12, 4)))
    xt, yt = x[:9], np.sign(x[:9, 0])
    if flip:
        xt, yt = xt[::-1], yt[::-1]
    np.savez(path, x_train=xt, y_train=yt, x_test=x[9:], y_test=np.sign(x[9:, 0]))
    return f"npz:{path}"


def _kernel_only(monkeypatch):
    monkeypatch.setattr(rep, "PARTS", [rep.PARTS[0]])


# ------------------------------------------------------------------ 1, 2: symbolic links in --out

def _link_lock(out_dir, outside):
    (out_dir / ".ntk-influence.lock").symlink_to(outside / "victim.txt")


def _link_lock_dangling(out_dir, outside):
    (out_dir / ".ntk-influence.lock").symlink_to(outside / "new.txt")


def _link_work(out_dir, outside):
    (out_dir / "work").symlink_to(outside, target_is_directory=True)


def _link_retrain(out_dir, outside):
    (out_dir / "retrain_16").symlink_to(outside, target_is_directory=True)


def _link_named(name):
    def link(out_dir, outside):
        (out_dir / name).symlink_to(outside, target_is_directory=True)
    return link


def _link_part(out_dir, outside):
    (out_dir / "kernel").symlink_to(outside, target_is_directory=True)


LINKS = [
    ("lock", _link_lock, ["influence", *SMALL], ".ntk-influence.lock is a symbolic link"),
    ("lock-dangling", _link_lock_dangling, ["influence", *SMALL, "--resume"],
     ".ntk-influence.lock is a symbolic link"),
    ("work-sweep", _link_work, ["lambda-sweep", *SMALL, "--lams", "0.1", "1"],
     "work is a symbolic link"),
    ("work-sweep-resume", _link_work, ["lambda-sweep", *SMALL, "--lams", "0.1", "--resume"],
     "work is a symbolic link"),
    ("work-dynamics", _link_work, ["dynamics", *SMALL, "--times", "1", "inf"],
     "work is a symbolic link"),
    ("retrain-compare", _link_retrain, ["compare", *SMALL, "--widths", "16", "--n-points", "2"],
     "retrain_16 is a symbolic link"),
    ("reproduce-part", _link_part, ["reproduce", *SMALL, "--parts", "kernel"],
     "kernel is a symbolic link"),
    ("retrain-clean", _link_named("retrain"), ["clean", "--n-train", "20", "--n-val", "6",
                                               "--n-test", "4", "--width", "8"],
     "retrain is a symbolic link"),
    ("trials-clean", _link_named("trials"), ["clean", "--n-train", "20", "--n-val", "6",
                                             "--n-test", "4", "--width", "8", "--trials", "2",
                                             "--resume"],
     "trials is a symbolic link"),
    ("retrain-attribution", _link_named("retrain"), ["attribution", *SMALL, "--width", "8"],
     "retrain is a symbolic link"),
]


@pytest.mark.parametrize("name, link, argv, expect", LINKS, ids=[c[0] for c in LINKS])
def test_symbolic_links_in_out_are_refused(name, link, argv, expect, tmp_path, capsys):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim.txt").write_text("precious\n")
    (outside / "item_0.npz").write_bytes(b"not ours")
    before = {p.name: p.read_bytes() for p in outside.iterdir()}
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    link(out_dir, outside)
    code, out, err = _run([*argv, "--out", out_dir], capsys)
    assert code == EXIT_USAGE, err
    assert expect in err and "results in" not in out
    _no_traceback(err)
    assert {p.name: p.read_bytes() for p in outside.iterdir()} == before


def test_result_store_refuses_a_symbolic_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "item_0.npz").write_bytes(b"x")
    (tmp_path / "work").symlink_to(outside, target_is_directory=True)
    for resume in (True, False):
        with pytest.raises(InputError, match="is a symbolic link"):
            ResultStore(tmp_path / "work", meta={"a": 1}, resume=resume)
    assert sorted(p.name for p in outside.iterdir()) == ["item_0.npz"]


def test_lock_is_a_new_regular_file_and_is_released(tmp_path, capsys):
    out_dir = tmp_path / "o"
    code, _, err = _run(["influence", *SMALL, "--quiet", "--out", out_dir], capsys)
    assert code == EXIT_OK, err
    assert not os.path.lexists(out_dir / ".ntk-influence.lock")


# ------------------------------------------------------------------ 3: empty --out, partial files

@pytest.mark.parametrize("argv", [
    ["influence", *SMALL, "--resume"],
    ["influence", *SMALL],
    ["lambda-sweep", *SMALL, "--resume"],
    ["reproduce", *SMALL, "--resume"],
    ["reproduce", *SMALL, "--dry-run"],
], ids=["influence-resume", "influence", "lambda-sweep", "reproduce", "reproduce-dry-run"])
@pytest.mark.parametrize("out", ["", "  "], ids=["empty", "blank"])
def test_empty_out_is_refused(argv, out, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "sub").mkdir()
    keep = [tmp_path / ".notes.tmp", tmp_path / "sub" / ".x.k3j2h1.tmp", tmp_path / "a.tmp"]
    for p in keep:
        p.write_text("not ours")
    code, out_text, err = _run([*argv, "--out", out], capsys)
    assert code == EXIT_USAGE and "--out is empty" in err and "results in" not in out_text
    assert all(p.exists() for p in keep)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".notes.tmp", "a.tmp", "sub"]


PARTIAL_NAMES = [
    (".summary.json.ntk-partial-ab_cd123.tmp", True),
    (".item_8.npz.ntk-partial-k3j2h1zz.tmp", True),
    (".summary.json.ntk-partial-short.tmp", False),   # not the 8 characters mkstemp adds
    (".item_8.npz.k3j2h1.tmp", False),                 # another program's temporary file
    (".notes.tmp", False),
    ("notes.tmp", False),
    ("summary.json.ntk-partial-abcd1234.tmp", False),  # not hidden: not a name we make
]


@pytest.mark.parametrize("name, ours", PARTIAL_NAMES, ids=[n for n, _ in PARTIAL_NAMES])
def test_only_our_temporary_files_are_removed(name, ours, tmp_path):
    (tmp_path / "work").mkdir()
    f = tmp_path / "work" / name
    f.write_text("half")
    assert is_partial_file(f) is ours
    assert remove_partial_files(tmp_path) == int(ours)
    assert f.exists() is not ours


def test_partial_file_removal_follows_no_link(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    theirs = outside / ".data.npz.ntk-partial-abcd1234.tmp"
    theirs.write_text("someone else's")
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    (out_dir / "linked").symlink_to(outside, target_is_directory=True)
    (out_dir / ".x.json.ntk-partial-efgh5678.tmp").symlink_to(theirs)
    assert remove_partial_files(out_dir) == 0
    assert theirs.read_text() == "someone else's"


def test_atomic_write_names_its_temporary_file_as_ours(tmp_path, monkeypatch):
    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        return real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    ni.io.save_json(tmp_path / "a.json", {"a": 1})
    assert len(seen) == 1 and is_partial_file(seen[0]), seen


# ------------------------------------------------------------------ 4, 5: no stale results

def test_reproduce_force_reruns_a_part_whose_data_changed(tmp_path, capsys, monkeypatch):
    _kernel_only(monkeypatch)
    spec = _npz_data(tmp_path / "d.npz")
    argv = ["reproduce", "--data", spec, "--n-train", "9", "--n-test", "3", "--out",
            tmp_path / "r"]
    assert _run(argv, capsys)[0] == EXIT_OK
    first = ni.io.load_npz(tmp_path / "r" / "kernel" / "influence.npz")["train_index"]
    _npz_data(tmp_path / "d.npz", flip=True)  # same spec, other arrays
    code, _, err = _run([*argv, "--resume"], capsys)
    assert code == EXIT_USAGE and "data_sha256" in err
    code, _, err = _run([*argv, "--resume", "--force"], capsys)
    assert code == EXIT_OK, err
    assert "kernel: its data changed since it ran; running it again" in err
    assert "finished earlier" not in err
    z = ni.io.load_npz(tmp_path / "r" / "kernel" / "influence.npz")
    ds = ni.load_dataset(spec, n_train=9, n_test=3)
    res = ni.ntk_influence(ds.x_train, ds.y_train, ds.x_test, ds.y_test, lam=0.1)
    np.testing.assert_allclose(z["influence"], res.influence, rtol=1e-6, atol=1e-9)
    assert first.shape == z["train_index"].shape
    # a second --resume now reuses the recomputed part
    code, _, err = _run([*argv, "--resume"], capsys)
    assert code == EXIT_OK and "kernel: finished earlier; skipping" in err


@pytest.mark.parametrize("damage", ["deleted", "corrupt", "not-a-dict"])
def test_results_without_a_fingerprint_are_never_reused(damage, tmp_path, capsys):
    spec = _npz_data(tmp_path / "d.npz")
    out_dir = tmp_path / "o"
    argv = ["influence", "--data", spec, "--out", out_dir]
    assert _run([*argv, "--quiet"], capsys)[0] == EXIT_OK
    _npz_data(tmp_path / "d.npz", flip=True)
    fp = out_dir / "fingerprint.json"
    if damage == "deleted":
        fp.unlink()
    elif damage == "corrupt":
        fp.write_text("{\"command\": ")
    else:
        fp.write_text("[1, 2]")
    code, _, err = _run([*argv, "--resume"], capsys)
    assert code == EXIT_OK, err
    _no_traceback(err)
    assert "no readable fingerprint.json" in err and "computing afresh" in err
    assert "skipping" not in err
    ds = ni.load_dataset(spec, n_train=9, n_test=3)
    res = ni.ntk_influence(ds.x_train, ds.y_train, ds.x_test, ds.y_test, lam=0.1)
    np.testing.assert_allclose(ni.io.load_npz(out_dir / "influence.npz")["influence"],
                               res.influence, rtol=1e-6, atol=1e-9)
    assert json.loads(fp.read_text())["data_sha256"]  # recorded again


# ------------------------------------------------------------------ 6: read-only and damaged state

def test_read_only_summary_is_refused_before_any_work(tmp_path, capsys, monkeypatch):
    import ntk_influence.influence as influence_module

    out_dir = tmp_path / "o"
    assert _run(["influence", *SMALL, "--quiet", "--out", out_dir], capsys)[0] == EXIT_OK
    summary = out_dir / "summary.json"
    summary.chmod(0o444)

    def never(*args, **kwargs):
        raise AssertionError("computed before checking the folder")

    monkeypatch.setattr(influence_module, "ntk_influence", never)
    code, _, err = _run(["influence", *SMALL, "--out", out_dir], capsys)
    assert code == EXIT_USAGE
    assert f"{summary} is read-only" in err
    _no_traceback(err)


def test_unwritable_destination_is_an_input_error_naming_the_file(tmp_path):
    (tmp_path / "summary.json").mkdir()  # a folder in the way
    with pytest.raises(InputError, match=r"cannot write .*summary\.json"):
        ni.io.save_json(tmp_path / "summary.json", {"a": 1})
    assert not [p for p in tmp_path.iterdir() if is_partial_file(p)]


def _truncate(p):
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


DAMAGE = [
    ("influence-summary", "influence", [], "summary.json", lambda p: p.write_text("{\"lam\": "),
     "summary.json is damaged"),
    ("influence-summary-list", "influence", [], "summary.json", lambda p: p.write_text("[]"),
     "summary.json is damaged"),
    ("influence-npz", "influence", [], "influence.npz", _truncate, "influence.npz is damaged"),
    ("sweep-item", "lambda-sweep", ["--lams", "0.1", "1"], "work/item_0.npz", _truncate,
     "item_0.npz is damaged"),
    ("sweep-empty-item", "lambda-sweep", ["--lams", "0.1", "1"], "work/item_1.npz",
     lambda p: p.write_bytes(b""), "item_1.npz is damaged"),
    ("sweep-meta", "lambda-sweep", ["--lams", "0.1", "1"], "work/meta.json",
     lambda p: p.write_text("{"), "meta.json is damaged"),
    ("dynamics-item", "dynamics", ["--times", "1", "inf", "--chunk-size", "8"],
     "work/item_8.npz", _truncate, "item_8.npz is damaged"),
    ("sweep-summary-list", "lambda-sweep", ["--lams", "0.1", "1"], "summary.json",
     lambda p: p.write_text("[]"), "summary.json is damaged"),
    ("sweep-summary-cut", "lambda-sweep", ["--lams", "0.1", "1"], "summary.json",
     lambda p: p.write_text("{\"settings\": "), "summary.json is damaged"),
]


@pytest.mark.parametrize("name, command, extra, target, spoil, expect", DAMAGE,
                         ids=[c[0] for c in DAMAGE])
def test_damaged_state_is_computed_again(name, command, extra, target, spoil, expect, tmp_path,
                                         capsys):
    out_dir = tmp_path / "o"
    argv = [command, *SMALL, *extra, "--out", out_dir]
    assert _run([*argv, "--quiet"], capsys)[0] == EXIT_OK
    good = {p.name: ni.io.load_npz(p) for p in out_dir.glob("*.npz")}
    if command != "influence":  # the store is used only when the summary is not finished
        (out_dir / "summary.json").unlink()
    spoil(out_dir / target)
    code, _, err = _run([*argv, "--resume"], capsys)
    assert code == EXIT_OK, err
    _no_traceback(err)
    said = [ln for ln in err.splitlines() if expect in ln]
    assert len(said) == 1 and "again" in said[0], err
    for fname, arrays in good.items():  # the results are whole again and the same
        again = ni.io.load_npz(out_dir / fname)
        for k, v in arrays.items():
            np.testing.assert_allclose(again[k], v, rtol=1e-6, atol=1e-9)
    if target.endswith(".npz"):
        ni.io.load_npz(out_dir / target)


def test_result_store_treats_damaged_items_and_meta_as_unfinished(tmp_path):
    store = ResultStore(tmp_path / "s", meta={"a": 1})
    store.save(0, x=np.arange(3.0))
    store.save(1, x=np.arange(4.0))
    _truncate(tmp_path / "s" / "item_1.npz")
    store = ResultStore(tmp_path / "s", meta={"a": 1})
    with pytest.warns(ResumeWarning, match=r"item_1\.npz is damaged"):
        assert store.done(0) and not store.done(1)
    np.testing.assert_array_equal(store.load(0)["x"], np.arange(3.0))
    assert store.keys() == ["0"]
    # a damaged meta.json: nothing beside it can be checked, so everything is computed again
    (tmp_path / "s" / "meta.json").write_text("{")
    with pytest.warns(ResumeWarning, match=r"meta\.json is damaged"):
        store = ResultStore(tmp_path / "s", meta={"a": 1})
    assert store.keys() == [] and not store.done(0)
    # items without any meta.json are not trusted either
    store.save(2, x=np.zeros(2))
    (tmp_path / "s" / "meta.json").unlink()
    with pytest.warns(ResumeWarning, match=r"meta\.json is missing"):
        assert ResultStore(tmp_path / "s", meta={"a": 1}).keys() == []
    # a fresh store says nothing
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ResultStore(tmp_path / "fresh", meta={"a": 1}).done(0)
    # loading a damaged item directly is a clear error, not a zipfile traceback
    (tmp_path / "fresh" / "item_5.npz").write_bytes(b"PK\x03\x04broken")
    with pytest.raises(InputError, match=r"item_5\.npz is damaged"):
        ResultStore(tmp_path / "fresh", meta={"a": 1}).load(5)


def test_load_saved_reads_only_whole_regular_files(tmp_path):
    # a finished piece reads back; a missing one is None without a word; a link, a folder or a
    # damaged file is None with a warning, and a link or damaged file is removed (not its target)
    ni.io.save_json(tmp_path / "a.json", {"k": [1, 2]})
    ni.io.save_npz(tmp_path / "b.npz", x=np.arange(3.0))
    assert ni.io.load_saved(tmp_path / "a.json") == {"k": [1, 2]}
    np.testing.assert_array_equal(ni.io.load_saved(tmp_path / "b.npz")["x"], np.arange(3.0))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ni.io.load_saved(tmp_path / "missing.json") is None
    (tmp_path / "link.json").symlink_to(tmp_path / "a.json")
    with pytest.warns(ResumeWarning, match=r"link\.json is not a regular file"):
        assert ni.io.load_saved(tmp_path / "link.json") is None
    assert not os.path.lexists(tmp_path / "link.json") and (tmp_path / "a.json").is_file()
    (tmp_path / "dir.json").mkdir()
    with pytest.warns(ResumeWarning, match="not a regular file"):
        assert ni.io.load_saved(tmp_path / "dir.json") is None
    assert (tmp_path / "dir.json").is_dir()
    _truncate(tmp_path / "b.npz")
    (tmp_path / "c.json").write_text("{")
    for name in ("b.npz", "c.json"):
        with pytest.warns(ResumeWarning, match=name.replace(".", r"\.") + " is damaged"):
            assert ni.io.load_saved(tmp_path / name) is None
        assert not (tmp_path / name).exists()


def test_reproduce_damaged_part_marker_counts_as_unfinished(tmp_path, capsys, monkeypatch):
    _kernel_only(monkeypatch)
    argv = ["reproduce", *SMALL, "--out", tmp_path / "r"]
    assert _run([*argv, "--quiet"], capsys)[0] == EXIT_OK
    (tmp_path / "r" / "kernel" / "part.json").write_text("{\"status\": ")
    code, _, err = _run([*argv, "--resume"], capsys)
    assert code == EXIT_OK, err
    _no_traceback(err)
    assert "part.json is damaged" in err and "finished earlier" not in err
    assert json.loads((tmp_path / "r" / "kernel" / "part.json").read_text())["status"] == "done"


# ------------------------------------------------------------------ 7: --kernel and --spectrum

def test_reproduce_passes_kernel_and_spectrum_to_the_parts(tmp_path, capsys):
    code, out, err = _run(["reproduce", "--dry-run", "--kernel", "paper-nt", "--spectrum",
                           "iterative", "--out", tmp_path / "d"], capsys)
    assert code == EXIT_OK, err
    lines = {ln.split()[1]: ln for ln in out.splitlines() if ln.startswith("ntk-influence ")}
    assert "--kernel paper-nt --spectrum iterative" in lines["influence"]
    for command in ("lambda-sweep", "density", "examples", "complexity", "dynamics",
                    "label-noise"):
        assert "--kernel paper-nt" in lines[command] and "--spectrum" not in lines[command]
    assert "--kernel" not in lines["compare"]
    # without them the parts keep their own defaults (and the same commands as before)
    code, out, _ = _run(["reproduce", "--dry-run", "--out", tmp_path / "e"], capsys)
    assert code == EXIT_OK and "--kernel" not in out and "--spectrum" not in out


def test_reproduce_kernel_and_spectrum_are_settings(tmp_path, capsys, monkeypatch):
    _kernel_only(monkeypatch)
    argv = ["reproduce", *SMALL, "--quiet", "--out", tmp_path / "r", "--kernel", "paper-both"]
    code, _, err = _run([*argv, "--spectrum", "exact"], capsys)
    assert code == EXIT_OK, err
    s = json.loads((tmp_path / "r" / "kernel" / "summary.json").read_text())
    assert s["settings"]["kernel"] == "paper-both" and s["settings"]["spectrum"] == "exact"
    assert s["conditioning"]["spectrum_method"] == "exact"
    code, _, err = _run([*argv, "--spectrum", "iterative", "--resume"], capsys)
    assert code == EXIT_USAGE and "spectrum: exact stored, iterative requested" in err
    code, _, err = _run([*argv, "--spectrum", "iterative", "--resume", "--force"], capsys)
    assert code == EXIT_OK, err
    s = json.loads((tmp_path / "r" / "kernel" / "summary.json").read_text())
    assert s["settings"]["spectrum"] == "iterative"


# ------------------------------------------------------------------ 8: --dry-run checks as a run

DRY = [
    ("n-train", ["--n-train", "5000"], "asked for 5000 points but only 250 are available"),
    ("n-test", ["--n-test", "5000"], "asked for 5000 points but only 107 are available"),
    ("lam", ["--lam", "-1"], "lam must be finite and >= 0, got -1.0"),
    ("lam-nan", ["--lam", "nan"], "lam must be finite and >= 0"),
]


@pytest.mark.parametrize("name, extra, expect", DRY, ids=[c[0] for c in DRY])
def test_dry_run_checks_values_as_a_run_would(name, extra, expect, tmp_path, capsys,
                                              monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("a part ran before the values were checked")

    monkeypatch.setattr(rep, "_run_part", never)
    code, out, dry_err = _run(["reproduce", *extra, "--dry-run", "--out", tmp_path / "d"], capsys)
    assert code == EXIT_USAGE and expect in dry_err and "ntk-influence influence" not in out
    code, _, real_err = _run(["reproduce", *extra, "--out", tmp_path / "r"], capsys)
    assert code == EXIT_USAGE
    last = lambda e: e.strip().splitlines()[-1]  # noqa: E731
    assert last(dry_err) == last(real_err)
    assert not list((tmp_path / "r").glob("*/part.json"))
