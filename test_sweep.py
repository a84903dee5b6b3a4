"""sweep.py on a tiny synthetic MNIST: studies in SQLite and PostgreSQL, several processes, pruning, bad input."""
import contextlib
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
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import sweep
import train
from test_train import assert_one_line_error, no_download, write_mnist  # noqa: F401 (no_download: autouse)

FAST = ["--seeds", "1,2", "--epochs", "1", "--validation", "50", "--device", "cpu"]
NAME = "mnist-recipe"  # sweep.py's default --study-name
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # as sweep.py does


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """300 images: 250 to train on, 50 held out to score the trials; a recipe that learns gets well above 10 %."""
    root = tmp_path_factory.mktemp("sweep_data")
    write_mnist(root, n_train=300)
    return root


def sweep_to_files(argv, folder):
    """sweep.main here, its workers forked (spawned ones would import torch again: 4 s each), all of them
    printing to folder/stdout.txt and folder/stderr.txt as a shell's redirect would; (exit code, stdout, stderr)."""
    logs = [folder / "stdout.txt", folder / "stderr.txt"]
    with pytest.MonkeyPatch.context() as mp, open(logs[0], "a", buffering=1) as stdout, \
            open(logs[1], "a", buffering=1) as stderr, \
            contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        mp.setattr(sweep, "START_METHOD", "fork")
        code = sweep.main([str(a) for a in argv])
    return code, logs[0].read_text(), logs[1].read_text()


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """A command with two workers and 3 trials on a new SQLite study, made once; tests look at it or work on
    copies (see `study`). Two commands at once on one study: the PostgreSQL test below, and the database races
    (threads) for SQLite."""
    out = tmp_path_factory.mktemp("finished") / "sweep"
    return out, *sweep_to_files(sweep_args(data, out, "--trials", "3", "--jobs", "2"), out.parent)


@pytest.fixture
def study(finished, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(finished[0], out)
    return out


def run_sweep(capture, *argv):
    """sweep.main in this process; capture: capsys, or capfd to see what worker processes print too."""
    code = sweep.main([str(a) for a in argv])
    out, err = capture.readouterr()
    return code, out, err


def trials(storage, waiting=False):
    """The study's trials, by number; those queued but not started only with waiting=True."""
    if isinstance(storage, Path):
        storage = f"sqlite:///{storage / 'sweep.db'}"
    found = optuna.load_study(study_name=NAME, storage=storage).get_trials()
    return [t for t in found if waiting or t.state != TrialState.WAITING]


def recipe(**changes):
    """A FIRST recipe's full parameters: train.py's defaults with `changes`."""
    defaults = train.parse_args([])
    return {name: changes.get(name, getattr(defaults, name)) for name in sweep.SPACE}


def sweep_args(data, out, *extra):
    return ["--data-dir", data, "--out-dir", out, *FAST, *extra]


# ---------------------------------------------------------------------------------------------
# studies

def test_a_command_with_two_workers_runs_its_trials_in_both(finished):
    """The study is created and its first recipes queued once, before the workers start; the workers share the
    command's trials and its count."""
    out, code, stdout, stderr = finished
    assert code == 0 and stderr == "", stderr
    assert "(1 of 3 here)" in stdout and "(3 of 3 here)" in stdout and "2 worker(s) x 1 thread(s)" in stdout
    done = trials(out, waiting=True)
    assert [t.state for t in done] == [TrialState.COMPLETE] * 3 + [TrialState.WAITING] * (len(sweep.FIRST) - 3)
    assert len({t.user_attrs["worker"] for t in done[:3]}) == 2  # both workers took trials
    assert not list(out.rglob("*.tmp"))


def test_trials_keep_per_seed_results_scored_on_held_out_images_and_a_report(finished):
    out = finished[0]
    done = trials(out)
    assert [t.params for t in done] == [recipe(**changes) for changes in sweep.FIRST[:3]]
    for t in done:
        finals = t.user_attrs["finals"]
        assert list(finals) == ["1", "2"] and list(t.user_attrs["epochs_at_target"]) == ["1", "2"]
        assert t.value == pytest.approx(sweep.score(list(finals.values())))
        for seed, final in finals.items():  # scored on held-out training images, never on the test set
            metrics = json.loads((out / "trials" / f"{t.number:04d}" / f"seed_{seed}" / "metrics.json").read_text())
            assert metrics["evaluated_on"].startswith("validation (50 ") and metrics["final_test_acc"] == final
    # the tiny runs learn: above chance (10 %), though the default's EMA (decay 0.999 a step) moves little in 4 steps
    assert max(t.user_attrs["finals"]["1"] for t in done) > 15
    md = (out / "sweep.md").read_text()
    assert all(f"| {n} | complete |" in md for n in range(3))
    assert (out / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_same_command_again_continues_the_study(study, data, capsys):
    before = trials(study)
    code, out, _ = run_sweep(capsys, "--data-dir", data, "--out-dir", study, "--trials", 1, *FAST)
    assert code == 0 and "3 trials so far" in out and "(1 of 1 here)" in out
    after = trials(study)
    assert [t.value for t in after[:3]] == [t.value for t in before]
    assert after[3].state == TrialState.COMPLETE
    assert after[3].params == recipe(**sweep.FIRST[3])  # the queue goes on where it was


def test_report_lists_every_finished_trial_counts_the_failed_and_trains_nothing(study, capsys):
    extra = optuna.load_study(study_name=NAME, storage=f"sqlite:///{study / 'sweep.db'}")
    for state in (TrialState.FAIL, TrialState.PRUNED):
        extra.tell(extra.ask(), state=state)
    (study / "sweep.md").unlink()
    code, out, _ = run_sweep(capsys, "--out-dir", study, "--report")
    assert code == 0 and out.strip() == f"report: {study / 'sweep.md'}"
    md = (study / "sweep.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
    listed = sorted((int(row.split(" | ")[0][2:]), row.split(" | ")[1]) for row in rows)
    assert listed == [(t.number, t.state.name.lower()) for t in trials(study) if t.state != TrialState.FAIL]
    assert [state for _, state in listed].count("complete") == 3 and "pruned" in {s for _, s in listed}
    failed = [t.number for t in trials(study) if t.state == TrialState.FAIL]
    assert f"{len(failed)} failed trial(s) not listed; the first: trial {failed[0]}, interrupted" in md
    best = max((t for t in trials(study) if t.state == TrialState.COMPLETE), key=lambda t: t.value)
    assert rows[0].startswith(f"| {best.number} | complete | {best.value:.3f} |")
    assert "python train.py " + " ".join(sweep.recipe_flags(best.params)) in md


def test_confirm_retrains_the_best_recipe_on_all_training_images_and_reports_its_test_accuracy(study, data, capsys):
    best = max(trials(study), key=lambda t: t.value)
    code, out, _ = run_sweep(capsys, "--data-dir", data, "--out-dir", study, "--confirm", 1, *FAST)
    assert code == 0 and f"confirming trial {best.number} on the test set: python train.py " in out
    assert "final: mean" in out and len(trials(study)) == 3  # a summary; no trial added
    summary = json.loads((study / "confirm" / f"trial_{best.number:04d}" / "seeds.json").read_text())
    assert [r["seed"] for r in summary["runs"]] == [1, 2]
    metrics = json.loads((study / "confirm" / f"trial_{best.number:04d}" / "seed_1" / "metrics.json").read_text())
    assert metrics["evaluated_on"] == "test" and metrics["args"]["validation"] == 0  # all 300 images trained on
    assert metrics["args"]["lr"] == best.params["lr"] and metrics["args"]["batch_size"] == best.params["batch_size"]


def test_a_recipe_that_cannot_learn_is_pruned_after_its_first_seed(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(sweep, "SPACE", {**sweep.SPACE, "lr": ("log", 1e-6, 0.2)})
    monkeypatch.setattr(sweep, "FIRST", [{}])  # the pruner waits for len(FIRST) finished trials
    args = ["--data-dir", data, "--out-dir", tmp_path, "--trials", 1, *FAST]
    assert run_sweep(capsys, *args)[0] == 0
    # lr 1e-6: the network stays where its seed put it, near chance
    optuna.load_study(study_name=NAME, storage=f"sqlite:///{tmp_path / 'sweep.db'}").enqueue_trial(recipe(lr=1e-6))
    code, out, _ = run_sweep(capsys, *args)
    assert code == 0 and "(1 of 1 here): pruned" in out
    good, bad = trials(tmp_path)
    assert good.state == TrialState.COMPLETE and bad.state == TrialState.PRUNED
    assert bad.params["lr"] == 1e-6 and list(bad.user_attrs["finals"]) == ["1"]  # seed 2 never trained
    assert not (tmp_path / "trials" / "0001" / "seed_2").exists()
    md = (tmp_path / "sweep.md").read_text()
    assert "| 1 | pruned |  |" in md  # listed, with no score: its value is an accuracy, not mean - 2 std
    assert "python train.py --lr 0.05 " in md  # the best recipe is the one that completed


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_processes_starting_a_new_study_at_once_all_join_it(storage, tmp_path, request):
    """Each creates the new database's tables; without sweep.connect trying again, all but one failed ('table
    studies already exists' in SQLite, a unique violation in PostgreSQL). The study's creator alone queues FIRST.
    Threads here (the same database race as processes, at a fraction of the cost)."""
    url = request.getfixturevalue("postgres_url") if storage == "postgresql" else f"sqlite:///{tmp_path / 'race.db'}"
    args = sweep.parse_args(["--storage", url, "--out-dir", str(tmp_path), *FAST])
    start, failures = threading.Barrier(4), []

    def join():
        start.wait()
        try:
            sweep.open_study(args, queue=True)
        except BaseException as e:  # noqa: B036 (reported below)
            failures.append(e)

    threads = [threading.Thread(target=join) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []
    assert [t.state for t in trials(url, waiting=True)] == [TrialState.WAITING] * len(sweep.FIRST)


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")  # ask() without optimize(): fine here
def test_processes_taking_queued_trials_at_once_each_get_trials_of_their_own(tmp_path):
    """SQLite ignores the SELECT ... FOR UPDATE by which Optuna hands out a queued trial: without sweep.py's
    BEGIN IMMEDIATE, four takers at once got 8 to 13 of 40 trials twice (threads here: the same file locks)."""
    url = f"sqlite:///{tmp_path / 'queue.db'}"
    queue = optuna.create_study(study_name=NAME, storage=url)
    for x in range(40):
        queue.enqueue_trial({"x": x})
    takers = [optuna.load_study(study_name=NAME, storage=sweep.connect(url)) for _ in range(4)]
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


def test_interrupting_the_parent_of_two_workers_leaves_no_trial_running(data, tmp_path, capfd, monkeypatch):
    """SIGINT to the parent alone (kill -INT; a terminal's Ctrl-C reaches the workers too): it stops its workers,
    their trials end FAIL, not RUNNING, and it says so in one line. Forked workers: the same signal handling as
    spawned ones without importing torch again (the fixture `finished` runs spawned ones)."""
    monkeypatch.setattr(sweep, "START_METHOD", "fork")
    started, stop = threading.Event(), threading.Event()
    both_train = lambda: len(list(tmp_path.glob("trials/*/seed_1/metrics.json"))) >= 2  # an epoch ended in each

    def interrupt_once_both_train():
        deadline = time.monotonic() + 120  # if they never do, the test fails then instead of training 1000 epochs
        while not both_train() and time.monotonic() < deadline and not stop.wait(0.1):
            pass
        if not stop.is_set():
            if both_train():
                started.set()
            os.kill(os.getpid(), signal.SIGINT)  # this process: here, sweep.main is the parent

    watcher = threading.Thread(target=interrupt_once_both_train, daemon=True)
    watcher.start()
    try:
        argv = ["--data-dir", data, "--out-dir", tmp_path, *FAST, "--epochs", 1000, "--trials", 4, "--jobs", 2]
        code = sweep.main([str(a) for a in argv])
    finally:
        stop.set()
        watcher.join()
    err = capfd.readouterr().err
    assert started.is_set() and code == 130 and "Traceback" not in err
    assert err.strip().splitlines() == ["interrupted: finished trials are in the study; run the same command to "
                                        "continue it"]
    states = [t.state for t in trials(tmp_path)]
    assert states == [TrialState.FAIL] * 2


# ---------------------------------------------------------------------------------------------
# bad input: one line naming the problem and the fix; the study that is there stays as it was

def closed_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_copies_score_every_network_of_every_seed_and_stay_the_study_setting(data, tmp_path, capsys):
    out = tmp_path / "sweep"
    code, stdout, _ = run_sweep(capsys, "--data-dir", data, "--out-dir", out, "--trials", 1, *FAST, "--copies", 2)
    assert code == 0 and "2 copies of the network per seed" in stdout
    [t] = trials(out)
    assert list(t.user_attrs["finals"]) == ["1.0", "1.1", "2.0", "2.1"]
    assert t.value == pytest.approx(sweep.score(list(t.user_attrs["finals"].values())))
    metrics = json.loads((out / "trials" / "0000" / "seed_2" / "metrics.json").read_text())
    assert [r["final_test_acc"] for r in metrics["copy_runs"]] == [t.user_attrs["finals"][k] for k in ("2.0", "2.1")]
    code, _, err = run_sweep(capsys, "--data-dir", data, "--out-dir", out, "--trials", 1, *FAST)
    assert_one_line_error(code, err, "--copies 2, not 1")


def have_psycopg():
    return importlib.util.find_spec("psycopg") is not None


BAD = {
    "malformed URL": (["--storage", "not a url"], ["--storage not a url", "not a storage URL", "sqlite:///"]),
    "SQLite in a missing folder": (["--storage", "sqlite:///{tmp}/missing/sweep.db"],
                                   ["cannot be used", "unable to open database file", "folder exists"]),
    "PostgreSQL on a closed port": (["--storage", "postgresql+psycopg://sweep:secret@127.0.0.1:{port}/sweep"],
                                    ["sweep:***@127.0.0.1", "cannot be used" if have_psycopg() else "psycopg"]),
    "a driver not installed": (["--storage", "postgresql+pg8000://sweep@127.0.0.1/sweep"],
                               ["needs a database driver", "pg8000", 'pip install "psycopg[binary]"']),
    "empty seed list": (["--seeds", ""], ["--seeds", "distinct seeds", "see python sweep.py --help"]),
    "other seeds than the study's": (["--seeds", "3,4"], ["--seeds 1,2, not 3,4", "--study-name"]),
    "another precision than the study's": (["--precision", "fp32"], ["--precision auto, not fp32", "--study-name"]),
    "--jobs 0": (["--jobs", "0"], ["--jobs must be >= 1 (got 0)"]),
    "--validation too large, met by two workers": (["--study-name", "new", "--validation", "1000", "--jobs", "2"],
                                                   ["--validation 1000 must leave training images"]),
    "report of a study that is not there": (["--report", "--study-name", "other"], ["no study 'other'",
                                                                                    "--study-name"]),
    "another search space": ([], ["was made with another search space", "new --study-name"]),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_leaves_the_study_as_it_was(case, study, data, tmp_path, capfd, monkeypatch):
    flags, words = BAD[case]
    monkeypatch.setattr(sweep, "START_METHOD", "fork")  # (--jobs 2 cases) as spawned, without importing torch again
    if case == "another search space":
        monkeypatch.setattr(sweep, "SPACE", {**sweep.SPACE, "lr": ("log", 0.01, 0.3)})
    before, report = [(t.state, t.value) for t in trials(study)], (study / "sweep.md").read_bytes()
    flags = [f.format(tmp=tmp_path, port=closed_port()) for f in flags]
    code, out, err = run_sweep(capfd, "--data-dir", data, "--out-dir", study, "--trials", 1, *FAST, *flags)
    assert_one_line_error(code, err, *words)  # capfd: worker processes print nothing either
    assert "secret" not in err and "trial " not in out
    assert [(t.state, t.value) for t in trials(study)] == before and (study / "sweep.md").read_bytes() == report


def test_a_study_that_no_trial_has_finished_takes_the_settings_of_the_latest_command(tmp_path):
    """A first command that failed (here: too many held-out images for the data) does not lock its settings in."""
    sweep.open_study(sweep.parse_args(["--out-dir", str(tmp_path), "--validation", "1000"]), queue=True)
    study = sweep.open_study(sweep.parse_args(["--out-dir", str(tmp_path), "--validation", "50"]), queue=True)
    assert study.user_attrs["validation"] == 50
    assert [t.state for t in trials(tmp_path, waiting=True)] == [TrialState.WAITING] * len(sweep.FIRST)  # queued once


def test_a_trial_that_fails_is_reported_and_the_study_goes_on(study, data, capsys, monkeypatch):
    def diverges(*args, **kwargs):
        raise train.Fail("loss became nan at epoch 0, step 1: lower --lr", code=3)

    monkeypatch.setattr(train, "run", diverges)
    code, out, err = run_sweep(capsys, "--data-dir", data, "--out-dir", study, "--trials", 1, *FAST)
    assert code == 0 and err == ""
    assert "trial 3 (1 of 1 here): fail (loss became nan at epoch 0, step 1: lower --lr)" in out
    assert [t.state for t in trials(study)] == [TrialState.COMPLETE] * 3 + [TrialState.FAIL]
    assert "1 failed trial(s) not listed; the first: trial 3, loss became nan at epoch 0" in (study / "sweep.md").read_text()


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
    """The several-machines path against a real server: a `python sweep.py` and this process join one study,
    each with its own out-dir, as on two machines."""
    def other_machine():  # another process, printing to its own files
        (tmp_path / "b").mkdir()
        sys.exit(sweep_to_files(sweep_args(data, tmp_path / "b", "--trials", 1, "--storage", postgres_url),
                                tmp_path / "b")[0])

    other = multiprocessing.get_context("fork").Process(target=other_machine)  # fork: no second torch import
    other.start()
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
    assert {t.user_attrs["worker"] for t in done} == {sweep.worker_name(os.getpid()), sweep.worker_name(other.pid)}
    assert (tmp_path / "a" / "sweep.md").is_file() and (tmp_path / "b" / "sweep.md").is_file()
