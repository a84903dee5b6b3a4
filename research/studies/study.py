"""What the study scripts under research/studies/ share: their command line, the held-out images they score on,
and the recipe they studied, built for one seed as train.py builds it (on the CPU)."""
import argparse
import dataclasses
import json
import time
from pathlib import Path

import torch

import train
from mnist import hold_out, load_mnist
from rundir import write_atomic

DEVICE = torch.device("cpu")
# The recipe the studies ran and compared against: train.py's default before the EMA became the default, whose
# readout is the equal-weight average after epochs 12, 13 and 14. Pinned, so that the committed commands
# reproduce; scored on 10,000 held-out training images, never on the test set.
STUDIED = train.Recipe(ema=0.0, average_epochs=3, validation=10000, precision="fp32")


def study_args(argv, *extra):
    """SEEDS (as train.py --seeds takes them) OUT.json [--data-dir DIR], plus any (flag, default) pairs in extra."""
    p = argparse.ArgumentParser()
    p.add_argument("seeds", type=train.parse_seeds)
    p.add_argument("out", type=Path)
    p.add_argument("--data-dir", default="../shared/data")
    for flag, default in extra:
        p.add_argument(flag, default=default)
    return p.parse_args(argv)


def validation_data(data_dir):
    return hold_out(load_mnist(data_dir, DEVICE), STUDIED.validation)


def studied_run(seed, **changes):
    """The studied recipe (with `changes`) and its seeded network, optimizer, schedule and weight average."""
    recipe = dataclasses.replace(STUDIED, **changes)
    return recipe, train.new_run(recipe, seed, DEVICE)


def finish_seed(row, started, results, out):
    """One seed done: print its row and rewrite OUT.json with every row so far (whole or not at all)."""
    row["seconds"] = time.time() - started
    results.append(row)
    print(json.dumps(row), flush=True)
    write_atomic(out, lambda tmp: tmp.write_text(json.dumps(results, indent=1)))
