"""research/sweep.py on a tiny synthetic MNIST: studies in Optuna's journal file, several processes on it, in
SQLite and PostgreSQL; pruning, the conditional space, the precision pin, bad input."""
import dataclasses
import importlib.util
import json
import multiprocessing
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import train
from device import device_name
from research import records, sweep
from test_train import assert_one_line_error

pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # as sweep.py does
FAST = ["--seeds", "1,2", "--epochs", "1", "--validation", "50", "--device", "cpu"]
NAME = "mnist-recipe"  # the default --study-name


def sweep_to_files(argv, folder):
    """sweep.main here, printing to folder/stdout.txt and folder/stderr.txt as a shell's redirect would;
    (exit code, stdout, stderr)."""
    logs = [folder / "stdout.txt", folder / "stderr.txt"]
    with open(logs[0], "a", buffering=1) as stdout, open(logs[1], "a", buffering=1) as stderr, \
            redirect_stdout(stdout), redirect_stderr(stderr):
        code = sweep.main([str(a) for a in argv])
    return code, logs[0].read_text(), logs[1].read_text()


def in_another_process(argv, folder):
    """The same command in another process (forked: no second torch import), printing to its own files in
    `folder`, as a second shell would: `python -m research.sweep ... &`."""
    folder.mkdir(parents=True, exist_ok=True)
    process = multiprocessing.get_context("fork").Process(target=lambda: sys.exit(sweep_to_files(argv, folder)[0]))
    process.start()
    return process


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """The same command twice at once on a new study (Optuna's way to search with several processes: its journal
    file takes their writes in turn), 2 trials each; made once, tests look at it or work on copies (`study`)."""
    root = tmp_path_factory.mktemp("finished")
    out = root / "sweep"
    argv = sweep_args(data, out, "--trials", 2)
    other = in_another_process(argv, root / "b")
    try:
        code, stdout, stderr = sweep_to_files(argv, root)
    finally:
        other.join(timeout=120)
    return out, code, stdout, stderr, other.exitcode, *((root / "b" / n).read_text() for n in ("stdout.txt", "stderr.txt"))


@pytest.fixture
def study(finished, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(finished[0], out)
    return out


def run_sweep(capture, *argv):
    """sweep.main in this process; (exit code, stdout, stderr)."""
    code = sweep.main([str(a) for a in argv])
    out, err = capture.readouterr()
    return code, out, err


def storage_of(where):
    """A study's storage: the journal file in an --out-dir, or a URL."""
    if isinstance(where, Path):
        return optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(where / "sweep.journal")))
    return where


def trials(where, waiting=False):
    """The study's trials, by number; those queued but not started only with waiting=True."""
    found = optuna.load_study(study_name=NAME, storage=storage_of(where)).get_trials()
    return [t for t in found if waiting or t.state != TrialState.WAITING]


def base():
    """The recipe FAST's trials vary."""
    return train.Recipe(epochs=1, validation=50)


def cpu():
    import torch
    return torch.device("cpu")


def first(k, **changes):
    """FIRST's k-th recipe as the params the study queues (FAST's settings)."""
    return sweep.space_params(dataclasses.replace(base(), **sweep.FIRST[k]))


def sweep_args(data, out, *extra):
    return ["--data-dir", data, "--out-dir", out, *FAST, *extra]


# ---------------------------------------------------------------------------------------------
# studies

def test_two_commands_at_once_share_one_study_each_running_its_own_trials(finished):
    """Each creates or joins the study and queues FIRST's recipes (once between them); the queued recipes go to
    one process each."""
    out, code, stdout, stderr, other_code, other_out, other_err = finished
    assert (code, other_code, stderr, other_err) == (0, 0, "", ""), stderr + other_err
    assert "(2 of 2 here)" in stdout and "(2 of 2 here)" in other_out
    done = trials(out, waiting=True)
    assert [t.state for t in done] == [TrialState.COMPLETE] * 4 + [TrialState.WAITING] * (len(sweep.FIRST) - 4)
    assert [t.params for t in done[:4]] == [first(k) for k in range(4)]
    assert len({t.user_attrs["worker"]["pid"] for t in done[:4]}) == 2  # both processes took trials
    assert not list(out.rglob("*.tmp"))


def test_trials_keep_per_seed_results_scored_on_held_out_images_and_a_report(finished):
    out = finished[0]
    done = trials(out)
    for t in done:
        finals = t.user_attrs["finals"]
        assert list(finals) == ["1", "2"] and t.user_attrs["settings"]["precision"] in ("bf16", "fp32")
        assert t.value == pytest.approx(sweep.score(list(finals.values())))
        for seed, final in finals.items():  # scored on held-out training images, never on the test set
            metrics = json.loads((out / "trials" / f"{t.number:04d}" / f"seed_{seed}" / "metrics.json").read_text())
            assert metrics["evaluated_on"].startswith("validation (50 ") and metrics["final_test_acc"] == final
    # the tiny runs learn: above chance (10 %), though the default's EMA (decay 0.999 a step) moves little in 4 steps
    assert max(t.user_attrs["finals"]["1"] for t in done) > 15
    md = (out / "sweep.md").read_text()
    assert all(f"| {n} | complete |" in md for n in range(4))
    for png in ("sweep.png", "sweep_seeds.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_command_again_continues_the_study(study, data, capsys):
    before = trials(study)
    code, out, _ = run_sweep(capsys, *sweep_args(data, study, "--trials", 1))
    assert code == 0 and "4 trials so far" in out and "(1 of 1 here)" in out
    after = trials(study)
    assert [t.value for t in after[:4]] == [t.value for t in before]
    assert after[4].state == TrialState.COMPLETE
    assert after[4].params == first(4)  # the queue goes on where it was, and is not queued again
    assert len(trials(study, waiting=True)) == len(sweep.FIRST)


def test_snapshots_are_asked_for_only_without_the_ema_and_every_first_recipe_trains_something_new(finished):
    """train.py's snapshots only feed an equal-weight average (--ema 0): with the EMA they change nothing."""
    def trains(params):  # what a recipe trains: snapshots only count without the EMA
        recipe = dataclasses.asdict(dataclasses.replace(base(), **params))
        return {k: v for k, v in recipe.items() if k != "snapshots" or recipe["ema"] == 0}

    recipes = [trains(p) for p in sweep.first_params(base())]
    assert all(r != recipes[0] for r in recipes[1:]) and len({json.dumps(r) for r in recipes}) == len(recipes)
    study = optuna.create_study()
    for ema in (0.999, 0.0):
        study.enqueue_trial({"ema": ema})
        recipe = sweep.suggest(study.ask(), base())
        assert recipe.ema == ema and isinstance(recipe, train.Recipe)
    with_ema, without = study.get_trials()
    assert "snapshots" not in with_ema.params and without.params["snapshots"] in (1, 4)
    assert set(sweep.SPACE) <= {f.name for f in dataclasses.fields(train.Recipe)}  # also checked on import


def test_report_lists_every_finished_trial_counts_the_failed_and_trains_nothing(study, capsys):
    extra = optuna.load_study(study_name=NAME, storage=storage_of(study))
    for state in (TrialState.FAIL, TrialState.PRUNED):
        extra.tell(extra.ask(), state=state)
    (study / "sweep.md").unlink()
    code, out, _ = run_sweep(capsys, "--out-dir", study, "--report")
    assert code == 0 and out.strip() == f"report: {study / 'sweep.md'}"
    md = (study / "sweep.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
    listed = sorted(listed_in(md).items())
    assert listed == [(t.number, t.state.name.lower()) for t in trials(study) if t.state != TrialState.FAIL]
    assert [state for _, state in listed].count("complete") == 4 and "pruned" in {s for _, s in listed}
    failed = [t.number for t in trials(study) if t.state == TrialState.FAIL]
    assert f"{len(failed)} failed trial(s) not listed; the first: trial {failed[0]}, interrupted" in md
    best = max((t for t in trials(study) if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert rows[0].startswith(f"| {best.number} | complete | {best.value:.3f} |")
    settings = best.user_attrs["settings"]
    assert sweep.train_command(sweep.confirm_recipe(best, settings)) in md


def listed_in(md):
    """The trials a sweep.md lists, {number: state}."""
    rows = [line.split(" | ") for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
    return {int(row[0][2:]): row[1] for row in rows}


def test_train_command_names_only_what_differs_from_train_py_s_default():
    assert sweep.train_command(train.Recipe()) == "python train.py"
    recipe = train.Recipe(lr=0.03, bn_decay=False, nesterov=True, epochs=12, precision="fp32")
    assert sweep.train_command(recipe) == "python train.py --epochs 12 --lr 0.03 --precision fp32 --nesterov --no-bn-decay"
    assert sweep.train_command(train.Recipe(step_size=5, average_epochs=5)) == "python train.py --step-size 5 --average-epochs 5"
    assert train.parse_args(sweep.train_command(recipe).split()[2:])[0] == recipe  # the command trains the recipe


def test_confirm_retrains_the_best_recipe_on_all_training_images_and_reports_its_test_accuracy(study, data, capsys):
    best = max(trials(study), key=lambda t: t.value)
    code, out, _ = run_sweep(capsys, *sweep_args(data, study, "--confirm", 1))
    assert code == 0 and f"confirming trial {best.number} on the test set: python train.py " in out
    assert "final: mean" in out and len(trials(study)) == 4  # a summary; no trial added
    folder = study / "confirm" / f"trial_{best.number:04d}"
    record = records.validate(json.loads((folder / "seeds.json").read_text()), "seeds.json")
    assert record["schema"] == "runs/1" and [r["seed"] for r in record["runs"]] == [1, 2]
    assert record["evaluated_on"] == "test" and record["recipe"]["validation"] == 0  # all 300 images trained on
    assert record["recipe"]["lr"] == best.params["lr"] and record["recipe"]["epochs"] == 1
    assert record["command"].startswith("python train.py ") and "--seeds 1,2" in record["command"]


def test_a_recipe_that_cannot_learn_is_pruned_after_its_first_seed(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep, "SPACE", {**sweep.SPACE, "lr": ("log", 1e-6, 0.2)})
    # the pruner waits for len(FIRST) finished trials; one epoch of 4 steps learns something with the weights
    # averaged and BatchNorm statistics re-estimated
    monkeypatch.setattr(sweep, "FIRST", [{"average_epochs": 1}])
    args = sweep_args(data, tmp_path, "--trials", 1)
    assert run_sweep(capsys, *args)[0] == 0
    # lr 1e-6: the network stays where its seed put it, near chance
    bad = {**sweep.first_params(base())[0], "lr": 1e-6}
    optuna.load_study(study_name=NAME, storage=storage_of(tmp_path)).enqueue_trial(bad)
    code, out, _ = run_sweep(capsys, *args)
    assert code == 0 and "(1 of 1 here): pruned" in out
    good, bad = trials(tmp_path)
    assert good.state == TrialState.COMPLETE and bad.state == TrialState.PRUNED
    assert bad.params["lr"] == 1e-6 and list(bad.user_attrs["finals"]) == ["1"]  # seed 2 never trained
    assert not (tmp_path / "trials" / "0001" / "seed_2").exists()
    md = (tmp_path / "sweep.md").read_text()
    assert "| 1 | pruned |  |" in md  # listed, with no score: its value is an accuracy, not mean - 2 std


@pytest.mark.parametrize("storage", ["journal", "postgresql"])
def test_processes_starting_a_new_study_at_once_all_join_it(storage, data, tmp_path, request):
    """Each creates the study or loads it, and queues FIRST's recipes unless the study has them (in the journal,
    one after another: exactly once). Threads here: the same storage race as processes, at a fraction of the cost."""
    url = request.getfixturevalue("postgres_url") if storage == "postgresql" else None
    args = sweep.parse_args(["--out-dir", str(tmp_path), *FAST] + (["--storage", url] if url else []))
    start, failures = threading.Barrier(4), []

    def join():
        start.wait()
        try:
            sweep.open_study(args, base())
        except BaseException as e:  # noqa: B036 (reported below)
            failures.append(e)

    threads = [threading.Thread(target=join) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    queued = [t.system_attrs["fixed_params"] for t in trials(url or tmp_path, waiting=True)]
    assert all(p in queued for p in sweep.first_params(base()))
    if storage == "journal":
        assert len(queued) == len(sweep.FIRST)


def test_processes_taking_queued_trials_at_once_each_get_trials_of_their_own(tmp_path):
    """Optuna's journal hands each queued trial to one taker (threads here: the same file lock as processes)."""
    args = sweep.parse_args(["--out-dir", str(tmp_path)])
    queue = optuna.create_study(study_name=NAME, storage=sweep.open_storage(args))
    for x in range(40):
        queue.enqueue_trial({"x": x})
    takers = [optuna.load_study(study_name=NAME, storage=sweep.open_storage(args)) for _ in range(4)]
    taken, start = [], threading.Barrier(len(takers))

    def take(study):
        start.wait()
        taken.extend(study.ask().number for _ in range(10))

    threads = [threading.Thread(target=take, args=(study,)) for study in takers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(taken) == list(range(40))


def test_ctrl_c_fails_the_running_trial_and_says_how_to_go_on(data, tmp_path, capfd, monkeypatch):
    """Optuna marks the interrupted trial failed (not left running); the command ends with one line and 130."""
    epoch_done = threading.Event()
    real_train_epoch = train.train_epoch

    def train_epoch(*args, **kwargs):
        record = real_train_epoch(*args, **kwargs)
        epoch_done.set()
        time.sleep(0.05)  # time for the signal to arrive inside the trial
        return record

    monkeypatch.setattr(train, "train_epoch", train_epoch)
    watcher = threading.Thread(target=lambda: epoch_done.wait(60) and os.kill(os.getpid(), signal.SIGINT))
    watcher.start()
    try:
        code = sweep.main([str(a) for a in sweep_args(data, tmp_path, "--epochs", 2, "--trials", 2)])
    finally:
        watcher.join()
    err = capfd.readouterr().err
    assert code == 130 and "Traceback" not in err
    assert err.strip().splitlines() == ["interrupted: finished trials are in the study; run the same command to "
                                        "continue it"]
    assert [t.state for t in trials(tmp_path)] == [TrialState.FAIL]


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # ask() without optimize(): fine here
def test_a_trial_whose_worker_died_is_failed_and_queued_again_by_the_next_worker(data, tmp_path, capsys, monkeypatch):
    """RDB storages: the heartbeat stops with its worker, and RetryHeartbeatStaleTrialCallback queues the trial
    again (here SQLite, a worker that vanished mid-trial, and a heartbeat of 1 s)."""
    monkeypatch.setattr(sweep, "HEARTBEAT", {"heartbeat_interval": 1, "grace_period": 1})
    monkeypatch.setattr(sweep, "FIRST", [{}])
    url = f"sqlite:///{tmp_path / 'sweep.db'}"
    args = [str(a) for a in sweep_args(data, tmp_path, "--trials", 1, "--storage", url)]
    storage = sweep.open_storage(sweep.parse_args(args))
    study = sweep.open_study(sweep.parse_args(args), base())
    dead = study.ask()  # takes the queued default recipe, then its worker is gone
    storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)
    code, out, _ = run_sweep(capsys, *args)
    assert code == 0 and "(1 of 1 here): score" in out
    done = trials(url)
    assert [t.state for t in done] == [TrialState.FAIL, TrialState.COMPLETE]
    assert done[1].params == first(0) and done[1].system_attrs["failed_trial"] == dead.number


linux_only = pytest.mark.skipif(not Path("/proc/self/stat").exists(),
                                reason="a worker's start time is read from /proc (Linux)")


@linux_only
def test_a_recorded_worker_has_ended_when_its_pid_is_free_or_another_process_s():
    me = sweep.this_worker()
    assert me["host"] == socket.gethostname() and me["pid"] == os.getpid() and not sweep.ended_here(me)
    assert sweep.ended_here({**me, "started": me["started"] + 1})  # the pid given to a later process
    child = subprocess.Popen(["true"])
    os.waitid(os.P_PID, child.pid, os.WEXITED | os.WNOWAIT)  # exited, not yet collected: a zombie
    gone = {**me, "pid": child.pid, "started": sweep.process_start(child.pid) or me["started"]}
    assert sweep.ended_here(gone)
    child.wait()
    assert sweep.ended_here(gone)
    assert not sweep.ended_here({**gone, "host": "elsewhere"})  # another machine's: not seen from here
    assert not sweep.ended_here(f"{socket.gethostname()}:{child.pid}")  # an older study's worker: no start time


@linux_only
def test_a_worker_killed_mid_trial_has_its_trial_failed_and_its_recipe_retried_by_the_next_worker(tiny_data, tmp_path,
                                                                                                   capsys):
    """SIGKILL leaves no code to fail the trial, and the journal has no heartbeat: the next worker on the machine
    sees the trial's process gone, fails the trial and queues its recipe again (after FIRST's, hence --trials)."""
    # 3 epochs: a trial is seen with an epoch's accuracy for two more epochs, time enough for the look to catch it
    argv = sweep_args(tiny_data, tmp_path, "--seeds", 1, "--trials", len(sweep.FIRST), "--epochs", 3)
    killed = kill_mid_trial(in_another_process(argv, tmp_path / "killed"), tmp_path)
    code, out, err = run_sweep(capsys, *argv)
    assert code == 0 and err == ""
    done = trials(tmp_path)
    assert [t.number for t in done if t.state not in (TrialState.COMPLETE, TrialState.PRUNED)] == [killed.number]
    assert done[killed.number].state == TrialState.FAIL
    [retry] = [t for t in done if "failed_trial" in t.user_attrs]
    assert retry.state in (TrialState.COMPLETE, TrialState.PRUNED) and retry.number > killed.number
    assert retry.params == killed.params == first(killed.number)  # the whole recipe, as queued
    assert (retry.user_attrs["failed_trial"], retry.user_attrs["retry_history"]) == (killed.number, [killed.number])
    pid = killed.user_attrs["worker"]["pid"]
    assert f"trial {killed.number}: its worker (pid {pid}) ended without finishing it: failed, its recipe queued " \
           "again" in out
    md = (tmp_path / "sweep.md").read_text()
    assert killed.number not in listed_in(md) and listed_in(md)[retry.number] == retry.state.name.lower()
    assert f"1 failed trial(s) not listed (1 queued again); the first: trial {killed.number}, interrupted" in md


def kill_mid_trial(process, out):
    """SIGKILL `process` while it trains a trial of the study in `out`; returns that trial as the kill left it.
    The journal's own lock is held from the look to the kill: the worker cannot finish the trial in between."""
    lock = optuna.storages.journal.JournalFileSymlinkLock(str(out / "sweep.journal"))
    while process.is_alive():
        lock.acquire()
        try:
            trial = trial_trained_by(process.pid, out)
            if trial:
                os.kill(process.pid, signal.SIGKILL)
                process.join()
                return trial
        finally:
            lock.release()
        time.sleep(0.02)
    pytest.fail(f"the worker ended (exit code {process.exitcode}) before it was seen training a trial")


def trial_trained_by(pid, out):
    """The running trial of the study in `out` that process `pid` trains: it records the process as its worker and
    has an epoch's accuracy (its recipe complete, not half sampled); None if none."""
    try:
        running = [t for t in trials(out) if t.state == TrialState.RUNNING]
    except (FileNotFoundError, KeyError):  # no journal yet, or no study in it
        return None
    return next((t for t in running if t.user_attrs.get("worker", {}).get("pid") == pid and t.intermediate_values),
                None)


# ---------------------------------------------------------------------------------------------
# bad input: one line naming the problem and the fix; the study that is there stays as it was

def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_copies_score_every_network_of_every_seed_and_stay_the_study_setting(data, tmp_path, capsys):
    out = tmp_path / "sweep"
    code, stdout, _ = run_sweep(capsys, *sweep_args(data, out, "--trials", 1, "--copies", 2))
    assert code == 0 and "2 copies of the network per seed" in stdout
    [t] = trials(out)
    assert list(t.user_attrs["finals"]) == ["1.0", "1.1", "2.0", "2.1"]
    assert t.value == pytest.approx(sweep.score(list(t.user_attrs["finals"].values())))
    metrics = json.loads((out / "trials" / "0000" / "seed_2" / "metrics.json").read_text())
    assert [r["final_test_acc"] for r in metrics["copy_runs"]] == [t.user_attrs["finals"][k] for k in ("2.0", "2.1")]
    code, _, err = run_sweep(capsys, *sweep_args(data, out, "--trials", 1))
    assert_one_line_error(code, err, "--copies 2, not 1")


def test_a_worker_whose_auto_precision_differs_from_the_study_s_is_refused(study, data, capsys, monkeypatch):
    """A study keeps one precision: auto is resolved on each worker's machine before it is compared."""
    stored = trials(study)[0].user_attrs["settings"]["precision"]
    other = {"bf16": "fp32", "fp32": "bf16"}[stored]
    monkeypatch.setattr(train, "pick_precision", lambda requested, device: (
        (other, "CPU without AMX or AVX512-BF16: bf16 emulated") if requested == "auto" else (requested, "--precision " + requested)))
    before = [(t.state, t.value) for t in trials(study)]
    code, out, err = run_sweep(capsys, *sweep_args(data, study, "--trials", 1))
    assert_one_line_error(code, err, f"trains in {stored} (trial 0, on ", f"--precision auto is {other}",
                          "bf16 emulated", f"pass --precision {stored} explicitly", "another --study-name",
                          f"on {device_name(cpu())}")
    assert [(t.state, t.value) for t in trials(study)] == before
    code, out, err = run_sweep(capsys, *sweep_args(data, study, "--trials", 1, "--precision", stored))
    assert code == 0 and "(1 of 1 here): score" in out, err


def have_psycopg():
    return importlib.util.find_spec("psycopg") is not None


BAD = {
    "malformed URL": (["--storage", "not a url"], ["--storage not a url", "not a storage URL", "postgresql+psycopg://"]),
    "SQLite in a missing folder": (["--storage", "sqlite:///{tmp}/missing/sweep.db"],
                                   ["cannot be used", "unable to open database file", "folder exists"]),
    "PostgreSQL on a closed port": (["--storage", "postgresql+psycopg://sweep:secret@127.0.0.1:{port}/sweep"],
                                    ["sweep:***@127.0.0.1", "cannot be used" if have_psycopg() else "psycopg"]),
    "a driver not installed": (["--storage", "postgresql+pg8000://sweep@127.0.0.1/sweep"],
                               ["needs a database driver", "pg8000", 'pip install "psycopg[binary]"']),
    "empty seed list": (["--seeds", ""], ["--seeds", "distinct seeds", "see python -m research.sweep --help"]),
    "other seeds than the study's": (["--seeds", "3,4"], ["--seeds 1,2, not 3,4", "--study-name"]),
    "--epochs 0": (["--epochs", "0"], ["--epochs must be > 0 (got 0)"]),
    "--trials 0": (["--trials", "0"], ["--trials must be >= 1 (got 0)"]),
    "--validation too large": (["--validation", "1000"], ["--validation 1000 must leave training images"]),
    "report of a study that is not there": (["--report", "--study-name", "other"], ["no study 'other'",
                                                                                    "--study-name"]),
    "another search space": ([], ["was made with another search space", "new --study-name"]),
    "report of a folder without a study": (["--report", "--out-dir", "{tmp}/none"], ["no study in ", "/none"]),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_leaves_the_study_as_it_was(case, study, data, tmp_path, capsys, monkeypatch):
    flags, words = BAD[case]
    if case == "another search space":
        monkeypatch.setattr(sweep, "SPACE", {**sweep.SPACE, "lr": ("log", 0.01, 0.3)})
    before, report = [(t.state, t.value) for t in trials(study)], (study / "sweep.md").read_bytes()
    flags = [f.format(tmp=tmp_path, port=closed_port()) for f in flags]
    code, out, err = run_sweep(capsys, *sweep_args(data, study, "--trials", 1), *flags)
    assert_one_line_error(code, err, *words)
    assert "secret" not in err and "trial " not in out
    assert [(t.state, t.value) for t in trials(study)] == before and (study / "sweep.md").read_bytes() == report


def test_a_trial_that_fails_is_reported_and_the_study_goes_on(study, data, capsys, monkeypatch):
    def diverges(*args, **kwargs):
        raise train.Fail("loss became nan at epoch 0, step 1: lower --lr", code=3)

    monkeypatch.setattr(train, "train_run", diverges)
    code, out, err = run_sweep(capsys, *sweep_args(data, study, "--trials", 1))
    assert code == 0 and err == ""
    assert "trial 4 (1 of 1 here): fail (loss became nan at epoch 0, step 1: lower --lr)" in out
    assert [t.state for t in trials(study)] == [TrialState.COMPLETE] * 4 + [TrialState.FAIL]
    assert "1 failed trial(s) not listed; the first: trial 4, loss became nan at epoch 0" in (study / "sweep.md").read_text()


# ---------------------------------------------------------------------------------------------
# PostgreSQL, the several-machines path, against a real server

def postgres_bin():
    """The folder of initdb and pg_ctl: on PATH, or where Debian's postgresql package puts them."""
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent  # past a symlink on PATH, to where pg_ctl is too
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return versions[-1].parent if versions else None


@pytest.fixture(scope="session")
def postgres_cluster():
    """A throwaway PostgreSQL cluster listening on a unix socket only (no port to collide on); yields the socket's
    folder, and stops and removes the cluster at the end. As the postgres user where the tests run as root
    (initdb refuses root)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    if not have_psycopg():
        pytest.skip('PostgreSQL driver not installed: pip install "psycopg[binary]"')
    as_postgres = []
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.skip("running as root and there is no 'postgres' user to run initdb as")
        as_postgres = ["runuser", "-u", "postgres", "--"]
    root = Path(tempfile.mkdtemp(prefix="sweep-pg-"))  # short: a socket's path has room for ~100 characters
    if as_postgres:
        shutil.chown(root, "postgres")
    cluster = root / "data"

    def pg(*args):
        subprocess.run([*as_postgres, *map(str, args)], cwd=root, check=True, capture_output=True, timeout=60)

    try:
        pg(bin_dir / "initdb", "-D", cluster, "--auth=trust", "-U", "postgres", "--no-sync", "-E", "UTF8")
        # -F: no fsync, a throwaway cluster
        pg(bin_dir / "pg_ctl", "-D", cluster, "-l", root / "log", "-w", "-o", f"-k {root} -c listen_addresses='' -F",
           "start")
        yield root
    finally:
        if (cluster / "postmaster.pid").exists():
            pg(bin_dir / "pg_ctl", "-D", cluster, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def postgres_url(postgres_cluster, request):
    """A new database in the cluster, for one test."""
    import psycopg

    name = "t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower())[:50]
    with psycopg.connect(host=str(postgres_cluster), user="postgres", dbname="postgres", autocommit=True) as db:
        db.execute(f'CREATE DATABASE "{name}"')
    return f"postgresql+psycopg://postgres@/{name}?host={postgres_cluster}"


def test_a_study_on_a_postgresql_server_is_joined_by_two_processes(postgres_url, data, tmp_path, capsys):
    """The several-machines path against a real server: another process and this one join one study, each with
    its own out-dir, as on two machines."""
    other = in_another_process(sweep_args(data, tmp_path / "b", "--trials", 1, "--storage", postgres_url), tmp_path / "b")
    try:
        code, out, _ = run_sweep(capsys, *sweep_args(data, tmp_path / "a", "--trials", 1, "--storage", postgres_url))
    finally:
        other.join(timeout=120)
    out_b, err_b = ((tmp_path / "b" / name).read_text() for name in ("stdout.txt", "stderr.txt"))
    assert code == 0 and other.exitcode == 0 and err_b == "", err_b
    assert "(1 of 1 here)" in out and "(1 of 1 here)" in out_b
    done = trials(postgres_url)
    assert [t.state for t in done] == [TrialState.COMPLETE] * 2
    assert all(list(t.user_attrs["finals"]) == ["1", "2"] for t in done)
    assert {(t.user_attrs["worker"]["host"], t.user_attrs["worker"]["pid"]) for t in done} == \
        {(socket.gethostname(), pid) for pid in (os.getpid(), other.pid)}
    assert (tmp_path / "a" / "sweep.md").is_file() and (tmp_path / "b" / "sweep.md").is_file()
