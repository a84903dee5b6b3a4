"""What the study scripts under research/studies/ share: their command line, the held-out images they score on, and the
recipe they studied (train.py's default before the EMA) built for one seed as train.py builds it (on the CPU; fp32 unless told)."""
import argparse
import contextlib
import json
import os
import time
from pathlib import Path

import torch

import train
from mnist import hold_out, load_mnist
from rundir import write_atomic

VALIDATION = 10000  # held-out training images that score a study (train.py --validation 10000), never the test set
DEVICE = torch.device("cpu")


def study_args(*extra):
    """SEEDS (as train.py --seeds takes them) OUT.json [--data-dir DIR], plus any (flag, default) pairs in extra."""
    p = argparse.ArgumentParser()
    p.add_argument("seeds", type=train.parse_seeds)
    p.add_argument("out", type=Path)
    p.add_argument("--data-dir", default="../shared/data")
    for flag, default in extra:
        p.add_argument(flag, default=default)
    return p.parse_args()


@contextlib.contextmanager
def quiet():
    """train.py's epoch log and progress bars, discarded: a study prints one row per seed."""
    with open(os.devnull, "w") as null, contextlib.redirect_stdout(null), contextlib.redirect_stderr(null):
        yield


def validation_data(data_dir):
    return hold_out(load_mnist(data_dir, DEVICE), VALIDATION)


# The recipe the studies ran and compared against: train.py's defaults before the EMA became the default, whose
# readout is the equal-weight average after epochs 12, 13 and 14. Pinned, so that the committed commands reproduce.
STUDIED_READOUT = ["--ema", "0", "--average-epochs", "3"]


def default_run(seed, precision="fp32"):
    """The studied recipe's args for `seed`, and its seeded network, optimizer, schedule and weight average."""
    args = train.parse_args(["--seed", str(seed), "--validation", str(VALIDATION), "--precision", precision,
                             *STUDIED_READOUT])
    return (args, *train.build(args, seed, DEVICE))


def finish_seed(row, started, results, out):
    """One seed done: print its row and rewrite OUT.json with every row so far (whole or not at all)."""
    row["seconds"] = time.time() - started
    results.append(row)
    print(json.dumps(row), flush=True)
    write_atomic(out, lambda tmp: tmp.write_text(json.dumps(results, indent=1)))
