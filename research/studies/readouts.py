"""Readout study (issue 10): which average of one training run's weights scores best? Each seed trains the
default recipe once, exactly as train.py does, while several weight averages follow the same trajectory
without touching it: the readouts' differences are paired, with nothing else between them.
Scored on the 10,000 held-out training images (train.py --validation 10000), never on the test set.

    python research/studies/readouts.py SEED,SEED,... OUT.json --data-dir ../shared/data
"""
import sys
import time
from pathlib import Path

from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
import train  # noqa: E402
from research.studies.study import DEVICE, default_run, finish_seed, quiet, study_args, validation_data  # noqa: E402

START = 6           # the EMAs start here: the first epoch at lr 0.01
SCORED = (12, 13, 14)  # the epochs whose end every readout is scored at (train.py's averaged ones)
SWA_FROM = {"swa_from_9": 9, "swa_from_6": 6}  # equal-weight average of the weights after each epoch from E
EMA_DECAYS = {"ema_0.999": 0.999, "ema_0.9997": 0.9997, "ema_0.9999": 0.9999}  # per step, from epoch START


def accuracy(model, data, args, device):
    return 100 * train.evaluate(model, data[2], data[3], args, device)[1][0] / len(data[2])


def score(averaged, data, args, device):
    """Validation accuracy of an average, its BatchNorm statistics re-estimated as train.py does it."""
    return accuracy(train.with_fresh_bn(averaged, data[0][:args.bn_images], args, device), data, args, device)


def main():
    a = study_args()
    device = DEVICE
    data = validation_data(a.data_dir)
    results = []
    for seed in a.seeds:
        args, model, opt, sched, averaged = default_run(seed)
        swas = {name: AveragedModel(model) for name in SWA_FROM}
        emas = {name: AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(d)) for name, d in EMA_DECAYS.items()}
        following = []  # the EMAs follow every optimizer step once the epoch reaches START
        opt.register_step_post_hook(lambda *_: [ema.update_parameters(model) for ema in following])
        row = {"seed": seed, "readouts": {name: [] for name in ["default", "last", *swas, *emas]}}
        t0 = time.time()
        for epoch in range(args.epochs):
            if epoch == START:
                following.extend(emas.values())
            with quiet():
                record = train.train_and_test(epoch, model, opt, averaged, data, args, device)
            sched.step()
            for name, first in SWA_FROM.items():
                if epoch >= first:
                    swas[name].update_parameters(model)
            if epoch in SCORED:
                row["readouts"]["default"].append(record["test_acc"])
                row["readouts"]["last"].append(accuracy(model, data, args, device))  # its own BN statistics
                for name, avg in {**swas, **emas}.items():
                    row["readouts"][name].append(score(avg, data, args, device))
        finish_seed(row, t0, results, a.out)


if __name__ == "__main__":
    main()
