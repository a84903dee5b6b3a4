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
def locked(out_dir):
    """Hold an advisory lock on out_dir for the whole run: a second run into it is refused, never interleaved.
    The OS releases the lock when the process ends, however it ends, so a lock file left by a crash blocks nothing."""
    with open(out_dir / LOCK_FILE, "a") as f:
        try:
            if fcntl:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise Fail(f"--out-dir {out_dir} is in use by another train.py run: wait for it to end, "
                       "or pass another --out-dir") from None
        yield


def refuse_to_overwrite(args, out_dir):
    """A new run never replaces an earlier one: refused, unless it resumes the run there or --overwrite clears it."""
    if args.resume and Path(args.resume).resolve().parent == out_dir.resolve():
        return  # continuing the run that is there
    folders = [out_dir / f"seed_{s}" for s in args.seeds] if args.seeds else [out_dir]
    earlier = [f / name for f in folders for name in RUN_FILES] + ([out_dir / "seeds.json"] if args.seeds else [])
    earlier = [path for path in earlier if path.exists()]
    if earlier and not args.overwrite:
        raise Fail(already_there(earlier[0], args, out_dir))
    for path in earlier:  # --overwrite: no file of the earlier run is left to be taken for one of this run's
        try:
            path.unlink()
        except OSError as e:
            raise Fail(f"--overwrite could not remove {path} ({e.strerror}): remove it yourself") from None


def already_there(found, args, out_dir):
    """The refusal: what the earlier run is, and the ways on."""
    folder = found.parent
    what = "seeds.json of an earlier --seeds run" if found.name == "seeds.json" else describe_run(folder)
    resume = f"continue it with --resume {folder / 'checkpoint.pt'}"
    if args.seeds:  # --resume continues one run: a seed's folder on its own
        seed_dir = out_dir / "seed_N"
        resume = f"continue a seed on its own with --resume {seed_dir}/checkpoint.pt --out-dir {seed_dir} --seed N"
    return f"{folder} already holds a run ({what}): {resume}, pass another --out-dir, or add --overwrite to replace it"


def describe_run(folder):
    """'seed 1, 15 epochs done, final test accuracy 99.52 %' from the metrics.json in `folder`, else its files."""
    try:
        m = json.loads((folder / "metrics.json").read_text())
        n = len(m["epochs"])
        return f"seed {m['seed']}, {n} epoch{'s' * (n != 1)} done, final test accuracy {m['final_test_acc']:.2f} %"
    except (OSError, ValueError, KeyError, TypeError):  # no metrics.json, or a damaged one
        return ", ".join(name for name in RUN_FILES if (folder / name).exists())
