"""research/benchmark.py on a tiny synthetic MNIST: `ours` is train.py's own run, the classic pipeline its own
network, the job estimate, the benchmark/1 record, one-line errors."""
import json
import os

import pytest
import torch

import train
from research import benchmark, records, throughput
from test_train import assert_one_line_error


def test_benchmark_ours_is_exactly_train_py_and_its_record_follows_the_schema(tiny_data, tmp_path, capsys):
    """The classic pipeline (its dropout, its DataLoader) must not shift the random numbers `ours` trains with:
    the benchmark's `ours` epochs are the first epochs of `python train.py --seed N`, a 15-epoch run."""
    out = tmp_path / "bench.json"
    argv = ["--data-dir", str(tiny_data), "--epochs", "3", "--device", "cpu", "--workers", "0", "--seed", "5", "--out", str(out)]
    assert benchmark.main(argv) == 0
    printed = capsys.readouterr().out
    assert train.main(["--data-dir", str(tiny_data), "--out-dir", str(tmp_path / "run"), "--device", "cpu", "--seed", "5"]) == 0
    capsys.readouterr()
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    record = records.validate(json.loads(out.read_text()), str(out))
    ours = record["pipelines"]["ours"]
    assert len(metrics["epochs"]) == 15 and ours["test_acc"] == [e["test_acc"] for e in metrics["epochs"][:3]]
    assert len(record["pipelines"]["classic"]["test_acc"]) == 3 and record["epochs"] == 3
    assert ours["precision"] == metrics["precision"] and record["pipelines"]["classic"]["precision"] == "fp32"
    assert record["log"] in printed and record["command"].startswith("python -m research.benchmark --data-dir")
    assert "weight averaging in a job's epochs 6-14" in printed  # not timed in 3 epochs, so timed on its own
    assert "speed-up" in printed and "15-epoch job" in printed and "peak RSS" in printed
    assert f"{record['speedup_job']:.2f}x for a 15-epoch job" in printed
    code = benchmark.main(argv)  # a record is never replaced
    assert_one_line_error(code, capsys.readouterr().err, f"--out {out} exists")


def test_benchmark_classic_pools_with_torchs_own_max_pool():
    """The published pipeline gets torch's nn.MaxPool2d, not model.py's faster one: its speed is its own."""
    net = benchmark.with_torchs_max_pool(train.new_run(train.Recipe(), 1, torch.device("cpu"))).model
    pools = [m for m in net.modules() if isinstance(m, torch.nn.MaxPool2d)]
    assert len(pools) == 1 and type(pools[0]) is torch.nn.MaxPool2d
    assert train.count_params(net) == 7830


def test_benchmark_job_counts_weight_averaging_in_the_last_epochs_only():
    """A 15-epoch job is the timed epochs, then each untimed one at the median of the timed epochs without
    weight averaging, plus the averaging's cost in the averaged epochs only (not in all 15)."""
    job_seconds = benchmark.job_seconds
    assert job_seconds(2.0, [10.0, 12.0, 11.0], 15, tail=1.0, tail_from=12) == 2 + 33 + 12 * 11 + 3 * 1
    assert job_seconds(2.0, [10.0, 12.0, 11.0], 15) == 2 + 33 + 12 * 11  # classic: no tail
    timed = [10.0] * 12 + [11.0, 11.0, 11.0]  # a whole job timed: its own sum, nothing added
    assert job_seconds(2.0, timed, 15, tail=1.0, tail_from=12) == 2 + sum(timed)
    # 13 timed: epoch 12's averaging is in its time; the median is of epochs 0-11; 13 and 14 get the tail
    assert job_seconds(0.0, [10.0] * 12 + [30.0], 15, tail=1.0, tail_from=12) == 150 + 2 * 11


@pytest.mark.parametrize("argv, words", [
    (["--epochs", "16"], ["--epochs must be 1 to 15", "python -m research.benchmark --help"]),
    (["--data-dir", "/nonexistent", "--epochs", "1"], ["MNIST not found", "--data-dir"]),
])
def test_benchmark_bad_input_is_one_line_error(argv, words, capsys):
    assert_one_line_error(benchmark.main(argv), capsys.readouterr().err, *words)


def test_throughput_compares_one_process_with_one_per_core_on_the_same_batch(tiny_data, tmp_path, capsys, monkeypatch):
    """Each way trains the same seeds, all threads in one process, then one single-thread process per core; the
    speed-up and the benchmark/1 record are the measured figures' (here made up: timing is not under test)."""
    asked = []

    def timed(args, seeds, out_dir, processes, threads):
        asked.append((seeds, processes, threads))
        return {"processes": processes, "threads": threads, "recipe_name": "custom", "precision": "fp32", "runs": 2,
                "seconds": 100.0 * threads, "runs_per_hour": 72.0 / threads, "final_test_acc": [99.5, 99.4],
                "run_seconds": [50.0, 50.0]}
    monkeypatch.setattr(throughput, "timed_batch", timed)
    out = tmp_path / "throughput.json"
    assert throughput.main(["--data-dir", str(tiny_data), "--epochs", "1", "--seeds", "1,2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    record = records.validate(json.loads(out.read_text()), str(out))
    cores = os.cpu_count()
    assert asked == [([1, 2], 1, cores), ([1, 2], cores, 1)]
    assert record["speedup_runs_per_hour"] == round(cores, 3) and list(record["setups"].values())[1]["threads"] == 1
    assert record["log"] in printed and f"{record['speedup_runs_per_hour']:.2f}x the runs an hour" in printed
    assert throughput.main(["--data-dir", str(tiny_data), "--out", str(out)]) == 2  # a record is never replaced


def test_throughput_times_the_train_py_batch_command_it_starts(tiny_data, tmp_path):
    """The real command, once (test_train.py has processes sharing a batch): its seeds trained, the figures those of
    its seeds.json."""
    args = throughput.parse_args(["--data-dir", str(tiny_data), "--epochs", "1"])
    setup = throughput.timed_batch(args, [1, 2], tmp_path / "one", processes=1, threads=1)
    record = json.loads((tmp_path / "one" / "seeds.json").read_text())
    assert sorted(r["seed"] for r in record["runs"]) == [1, 2] and record["seeds_not_run"] == []
    assert setup["runs"] == 2 and setup["final_test_acc"] == [r["test_acc"][-1] for r in record["runs"]]
    assert (setup["processes"], setup["threads"], setup["recipe_name"]) == (1, 1, "custom")
