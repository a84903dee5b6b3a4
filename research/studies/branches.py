"""Final-phase study by branching (issue 10): train a trunk to the start of StepLR's last phase (epoch 12 of
15, lr 0.002), then finish it several ways from the very same weights, optimizer and schedule state, each
branch drawing the same random stream. Only the last phase differs, so the branches' differences are paired.
Scored on the 10,000 held-out training images (train.py --validation 10000), never on the test set.

    python -m research.studies.branches SEED,SEED,... OUT.json --branches default,no_aug --data-dir ../shared/data
"""
import copy
import dataclasses
import time

import torch
from torch.optim.swa_utils import AveragedModel

import train
from research.studies.study import DEVICE, finish_seed, study_args, studied_run, validation_data

BRANCHES = {  # name: augmentation of the last phase (rotation degrees, shift pixels, scale)
    "default": (7.0, 1.0, 0.1),
    "no_aug": (0.0, 0.0, 0.0),
    "half_aug": (3.5, 0.5, 0.05),
    "strong_aug": (10.5, 1.5, 0.15),
}


def main(argv=None):
    a = study_args(argv, ("--branches", "default,no_aug,half_aug"))
    data = validation_data(a.data_dir)
    results = []
    for seed in a.seeds:
        recipe, run = studied_run(seed)
        trunk_end = recipe.epochs - recipe.average_epochs
        t0 = time.time()
        for _ in range(trunk_end):
            record = train.train_epoch(run, recipe, data, DEVICE, log=False)
        trunk = copy.deepcopy((run.model.state_dict(), run.optimizer.state_dict(), run.scheduler.state_dict()))
        row = {"seed": seed, "trunk_val_acc": record["test_acc"], "branches": {}}
        for name in a.branches.split(","):
            rotation, shift, scale = BRANCHES[name]
            for part, state in zip((run.model, run.optimizer, run.scheduler), trunk):
                part.load_state_dict(state)
            run.averaged, run.epoch = AveragedModel(run.model), trunk_end  # a fresh average, from the trunk's end
            branch = dataclasses.replace(recipe, rotation=rotation, shift=shift, scale=scale)
            torch.manual_seed(seed * 1000 + 1)  # every branch the same stream: batch order, angles drawn alike
            row["branches"][name] = [train.train_epoch(run, branch, data, DEVICE, log=False)["test_acc"]
                                     for _ in range(trunk_end, recipe.epochs)]
        finish_seed(row, t0, results, a.out)


if __name__ == "__main__":
    main()
