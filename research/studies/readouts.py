"""Readout study (issue 10): which average of one training run's weights scores best? Each seed trains the
studied recipe once, exactly as train.py does, while several weight averages follow the same trajectory
without touching it: the readouts' differences are paired, with nothing else between them.
Scored on the 10,000 held-out training images (train.py --validation 10000), never on the test set.

    python -m research.studies.readouts SEED,SEED,... OUT.json --data-dir ../shared/data
"""
import time

from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import train
from research.studies.study import DEVICE, finish_seed, study_args, studied_run, validation_data

START = 6           # the EMAs start here: the first epoch at lr 0.01
SCORED = (12, 13, 14)  # the epochs whose end every readout is scored at (the studied recipe's averaged ones)
SWA_FROM = {"swa_from_9": 9, "swa_from_6": 6}  # equal-weight average of the weights after each epoch from E
EMA_DECAYS = {"ema_0.999": 0.999, "ema_0.9997": 0.9997, "ema_0.9999": 0.9999}  # per step, from epoch START


def accuracy(model, data, recipe):
    return 100 * train.evaluate(model, data.test_x, data.test_y, recipe, DEVICE)[1][0] / len(data.test_x)


def score(averaged, data, recipe):
    """Validation accuracy of an average, its BatchNorm statistics re-estimated as train.py does it."""
    return accuracy(train.with_fresh_bn(averaged, data.train_x[:recipe.bn_images], recipe, DEVICE), data, recipe)


def follow_steps(run):
    """A list whose averages are updated after each optimizer step of the run: add them when they start."""
    following = []
    run.optimizer.register_step_post_hook(lambda *_: [a.update_parameters(run.model) for a in following])
    return following


def main(argv=None):
    a = study_args(argv)
    data = validation_data(a.data_dir)
    results = []
    for seed in a.seeds:
        recipe, run = studied_run(seed)
        swas = {name: AveragedModel(run.model) for name in SWA_FROM}
        emas = {name: AveragedModel(run.model, multi_avg_fn=get_ema_multi_avg_fn(d)) for name, d in EMA_DECAYS.items()}
        following = follow_steps(run)
        row = {"seed": seed, "readouts": {name: [] for name in ["default", "last", *swas, *emas]}}
        t0 = time.time()
        for epoch in range(recipe.epochs):
            if epoch == START:
                following.extend(emas.values())
            record = train.train_epoch(run, recipe, data, DEVICE, log=False)
            for name, first in SWA_FROM.items():
                if epoch >= first:
                    swas[name].update_parameters(run.model)
            if epoch in SCORED:
                row["readouts"]["default"].append(record["test_acc"])
                row["readouts"]["last"].append(accuracy(run.model, data, recipe))  # its own BN statistics
                for name, avg in {**swas, **emas}.items():
                    row["readouts"][name].append(score(avg, data, recipe))
        finish_seed(row, t0, results, a.out)


if __name__ == "__main__":
    main()
