"""A run's --out-dir: created if needed, held by one run at a time, never overwritten by a new run, and every
file in it written whole or not at all (to a temporary name, then renamed). train.py and research/ write through it.
"""
import contextlib
import json
import os
from pathlib import Path

from errors import PERMISSION_ERRORS, Fail, write_permission_fix

try:
    import fcntl
except ImportError:  # Windows: no advisory locks, so runs into one --out-dir are not guarded against each other
    fcntl = None

RUN_FILES = ("metrics.json", "checkpoint.pt", "model.pt", "curves.png")  # what one run writes to its folder
LOCK_FILE = ".train.lock"


def write_atomic(path, write):
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")  # its own: two processes may write one file
    try:
        write(tmp)
        with open(tmp, "rb+") as f:  # on the disk before the rename: a crash cannot leave an empty file either
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # a full disk, a lost mount...: the earlier file stays as it was
        raise Fail(f"could not write {path} ({e.strerror or e}): free some space or fix the folder, "
                   "or pass another --out-dir") from None
    finally:  # also on Ctrl-C: no half-written file is left behind
        tmp.unlink(missing_ok=True)


def prepare_out_dir(out_dir):
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise Fail(f"--out-dir {out_dir} is a file: pass a folder (it is created if needed)")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        fix = write_permission_fix(out_dir) if e.errno in PERMISSION_ERRORS else "pass a folder you can write to"
        raise Fail(f"--out-dir {out_dir} cannot be created ({e.strerror}): {fix}") from None
    if not os.access(out_dir, os.W_OK | os.X_OK):
        raise Fail(f"--out-dir {out_dir} is not writable: {write_permission_fix(out_dir)}")
    return out_dir


@contextlib.contextmanager
def claimed(folder, name=LOCK_FILE, wait=False):
    """Hold an advisory lock on `folder` while the block runs, if no other process holds it (or, with wait, once it
    is free): yields True, or False when another process holds it. The OS releases the lock when the process ends,
    however it ends, so a lock file left by a crash blocks nothing."""
    with open(Path(folder) / name, "a") as f:
        try:
            if fcntl:
                fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True


@contextlib.contextmanager
def locked(out_dir, name=LOCK_FILE, wait=False):
    """claimed(), or a Fail when another run holds the folder: a second run into it is refused, never interleaved."""
    with claimed(out_dir, name, wait) as mine:
        if not mine:
            raise Fail(f"--out-dir {out_dir} is in use by another train.py run: wait for it to end, "
                       "or pass another --out-dir")
        yield


def refuse_to_overwrite(args, out_dir):
    """A new run never replaces an earlier one: refused, unless it resumes the run there or --overwrite clears it."""
    if args.resume and Path(args.resume).resolve().parent == out_dir.resolve():
        return  # continuing the run that is there
    earlier = [out_dir / name for name in RUN_FILES if (out_dir / name).exists()]
    if earlier and not args.overwrite:
        raise Fail(f"{out_dir} already holds a run ({describe_run(out_dir)}): continue it with --resume "
                   f"{out_dir / 'checkpoint.pt'}, pass another --out-dir, or add --overwrite to replace it")
    remove(earlier)


def remove(paths):
    """--overwrite: no file of an earlier run is left to be taken for one of the new run's."""
    for path in paths:
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise Fail(f"--overwrite could not remove {path} ({e.strerror}): remove it yourself") from None


def describe_run(folder):
    """'seed 1, 15 epochs done, final test accuracy 99.52 %' from the metrics.json in `folder`, else its files."""
    try:
        m = json.loads((folder / "metrics.json").read_text())
        n = len(m["epochs"])
        return f"seed {m['seed']}, {n} epoch{'s' * (n != 1)} done, final test accuracy {m['final_test_acc']:.2f} %"
    except (OSError, ValueError, KeyError, TypeError):  # no metrics.json, or a damaged one
        return ", ".join(name for name in RUN_FILES if (folder / name).exists())
