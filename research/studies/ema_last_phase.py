"""EMA readouts of the last phase (issue 10): the earlier readout study's best, an EMA of every step from epoch 6
at decay 0.999, measured on more seeds beside EMAs that start with the last phase (epoch 12, lr 0.002), which
cost a run a third of the updates. As in readouts.py, each seed trains the studied recipe once, exactly as
train.py does, and the EMAs follow the same steps without touching them: their differences to the recipe's own
readout (the average after epochs 12, 13 and 14) are paired. Scored on the 10,000 held-out training images,
never on the test set; BatchNorm statistics re-estimated for each EMA as train.py does for its average.

    python -m research.studies.ema_last_phase SEED,SEED,... OUT.json --data-dir ../shared/data [--precision auto]
"""
import time

from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import train
from research.studies.readouts import SCORED, follow_steps, score
from research.studies.study import DEVICE, finish_seed, study_args, studied_run, validation_data

EMAS = {"ema_0.999_from6": (0.999, 6), "ema_0.999_from12": (0.999, 12),  # name: (decay per step, first epoch)
        "ema_0.998_from12": (0.998, 12), "ema_0.9995_from12": (0.9995, 12)}


def main(argv=None):
    a = study_args(argv, ("--precision", "auto"))
    data = validation_data(a.data_dir)
    precision, why = train.pick_precision(a.precision, DEVICE)
    print(f"precision: {precision} ({why})", flush=True)
    results = []
    for seed in a.seeds:
        recipe, run = studied_run(seed, precision=precision)
        emas = {name: AveragedModel(run.model, multi_avg_fn=get_ema_multi_avg_fn(d)) for name, (d, _) in EMAS.items()}
        following = follow_steps(run)  # the EMAs follow every optimizer step from their first epoch on
        row = {"seed": seed, "precision": recipe.precision, "readouts": {name: [] for name in ["default", *emas]}}
        t0 = time.time()
        for epoch in range(recipe.epochs):
            following.extend(emas[name] for name, (_, first) in EMAS.items() if first == epoch)
            record = train.train_epoch(run, recipe, data, DEVICE, log=False)
            if epoch in SCORED:
                row["readouts"]["default"].append(record["test_acc"])
                for name, ema in emas.items():
                    row["readouts"][name].append(score(ema, data, recipe))
        finish_seed(row, t0, results, a.out)


if __name__ == "__main__":
    main()
