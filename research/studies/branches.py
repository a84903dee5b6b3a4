"""Final-phase study by branching (issue 10): train a trunk to the start of StepLR's last phase (epoch 12 of
15, lr 0.002), then finish it several ways from the very same weights, optimizer and schedule state, each
branch drawing the same random stream. Only the last phase differs, so the branches' differences are paired.
Scored on the 10,000 held-out training images (train.py --validation 10000), never on the test set.

    python research/studies/branches.py SEED,SEED,... OUT.json --branches default,no_aug --data-dir ../shared/data
"""
import copy
import sys
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import train  # noqa: E402
from research.studies.study import DEVICE, default_run, finish_seed, quiet, study_args, validation_data  # noqa: E402

BRANCHES = {  # name: augmentation of the last phase (rotation degrees, shift pixels, scale)
    "default": (7.0, 1.0, 0.1),
    "no_aug": (0.0, 0.0, 0.0),
    "half_aug": (3.5, 0.5, 0.05),
    "strong_aug": (10.5, 1.5, 0.15),
}


def main():
    a = study_args(("--branches", "default,no_aug,half_aug"))
    device = DEVICE
    data = validation_data(a.data_dir)
    results = []
    for seed in a.seeds:
        args, model, opt, sched, averaged = default_run(seed)
        trunk_end = args.epochs - args.average_epochs
        t0 = time.time()
        with quiet():
            for epoch in range(trunk_end):
                record = train.train_and_test(epoch, model, opt, averaged, data, args, device)
                sched.step()
        trunk = copy.deepcopy((model.state_dict(), opt.state_dict(), sched.state_dict()))
        row = {"seed": seed, "trunk_val_acc": record["test_acc"], "branches": {}}
        for name in a.branches.split(","):
            rotation, shift, scale = BRANCHES[name]
            for part, state in zip((model, opt, sched), trunk):
                part.load_state_dict(state)
            averaged = AveragedModel(model)
            b = copy.copy(args)
            b.rotation, b.shift, b.scale = rotation, shift, scale
            torch.manual_seed(seed * 1000 + 1)  # every branch the same stream: batch order, angles drawn alike
            accs = []
            with quiet():
                for epoch in range(trunk_end, args.epochs):
                    accs.append(train.train_and_test(epoch, model, opt, averaged, data, b, device)["test_acc"])
                    sched.step()
            row["branches"][name] = accs
        finish_seed(row, t0, results, a.out)


if __name__ == "__main__":
    main()
