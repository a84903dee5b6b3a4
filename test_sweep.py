"""sweep.py on a tiny synthetic MNIST: studies in SQLite and PostgreSQL, several processes, pruning, bad input."""
import importlib.util
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import optuna
import pytest
import torch
from optuna.trial import TrialState

import sweep
import train
from test_train import assert_one_line_error, no_download, write_mnist  # noqa: F401 (no_download: autouse)

HERE = Path(__file__).resolve().parent
FAST = ["--seeds", "1,2", "--epochs", "1", "--validation", "50", "--device", "cpu"]
NAME = "mnist-recipe"  # sweep.py's default --study-name
pytestmark = pytest.mark.filterwarnings("ignore::optuna.exceptions.ExperimentalWarning")  # as sweep.py does


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread here and in the processes the tests start: on 2 cores busy with other work, a process's
    two threads wait on each other and a tiny run takes 8 times longer (0.65 s against 5.2 s, measured)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("OMP_NUM_THREADS", "1")
        yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """300 images: 250 to train on, 50 held out to score the trials; a recipe that learns gets well above 10 %."""
    root = tmp_path_factory.mktemp("sweep_data")
    write_mnist(root, n_train=300)
    return root


@pytest.fixture(scope="module")
def finished(data, tmp_path_factory):
    """The out-dir of a finished 2-trial study, made once; tests work on copies of it (see `study`)."""
    out = tmp_path_factory.mktemp("finished") / "sweep"
    assert sweep.main(["--data-dir", str(data), "--out-dir", str(out), "--trials", "2", *FAST]) == 0
    return out


@pytest.fixture
def study(finished, tmp_path):
    out = tmp_path / "sweep"
    shutil.copytree(finished, out)
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


def sweep_command(data, out, *extra):
    return [sys.executable, "sweep.py", "--data-dir", str(data), "--out-dir", str(out), *FAST, *extra]


# ---------------------------------------------------------------------------------------------
# studies

def test_two_trial_study_completes_into_sqlite_with_per_seed_results_and_a_report(finished):
    done = trials(finished)
    assert [t.state for t in done] == [TrialState.COMPLETE] * 2
    assert [t.params for t in done] == [recipe(), recipe(batch_size=64)]  # FIRST's recipes, in order
    for t in done:
        finals = t.user_attrs["finals"]
        assert list(finals) == ["1", "2"] and list(t.user_attrs["epochs_at_target"]) == ["1", "2"]
        assert t.value == pytest.approx(sweep.score(list(finals.values())))
        for seed, final in finals.items():  # scored on held-out training images, never on the test set
            metrics = json.loads((finished / "trials" / f"{t.number:04d}" / f"seed_{seed}" / "metrics.json")
                                       .read_text())
            assert metrics["evaluated_on"].startswith("validation (50 ") and metrics["final_test_acc"] == final
    assert max(t.user_attrs["finals"]["1"] for t in done) > 20  # the tiny recipe runs do learn
    md = (finished / "sweep.md").read_text()
    assert "| 0 | complete |" in md and "| 1 | complete |" in md
    assert (finished / "sweep.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(finished.rglob("*.tmp"))


def test_the_same_command_again_continues_the_study(study, data, capsys):
    before = trials(study)
    code, out, _ = run_sweep(capsys, "--data-dir", data, "--out-dir", study, "--trials", 1, *FAST)
    assert code == 0 and "2 trials so far" in out and "(1 of 1 here)" in out
    after = trials(study)
    assert [t.value for t in after[:2]] == [t.value for t in before]
    assert after[2].state == TrialState.COMPLETE
    assert after[2].params == recipe(batch_size=64, lr=0.025)  # the queue goes on where it was, not from the start


def test_report_lists_every_trial_and_trains_nothing(study, capsys):
    storage = optuna.storages.RDBStorage(f"sqlite:///{study / 'sweep.db'}")
    extra = optuna.load_study(study_name=NAME, storage=storage)
    for state in (TrialState.FAIL, TrialState.PRUNED):
        extra.tell(extra.ask(), state=state)
    (study / "sweep.md").unlink()
    code, out, _ = run_sweep(capsys, "--out-dir", study, "--report")
    assert code == 0 and out.strip() == f"report: {study / 'sweep.md'}"
    md = (study / "sweep.md").read_text()
    rows = [line for line in md.splitlines() if line.startswith("| ") and line[2].isdigit()]
    assert sorted(row.split(" | ")[:2] for row in rows) == [
        ["| 0", "complete"], ["| 1", "complete"], ["| 2", "fail"], ["| 3", "pruned"]]
    best = max(trials(study)[:2], key=lambda t: t.value)
    assert rows[0].startswith(f"| {best.number} | complete | {best.value:.3f} |")
    assert "python train.py " + " ".join(sweep.recipe_flags(best.params)) in md
    assert len(trials(study)) == 4


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


@pytest.mark.parametrize("storage, jobs", [("sqlite", 2), ("postgresql", 1)])
def test_two_commands_started_at_once_on_one_study_add_up(storage, jobs, data, tmp_path, request):
    """Both start on a new database: both create its tables, one creates the study and queues its first recipes.
    On one machine (SQLite) they share the out-dir, and one runs two workers; on two (PostgreSQL) each has its own."""
    url = request.getfixturevalue("postgres_url") if storage == "postgresql" else None
    outs = [tmp_path / "a", tmp_path / "b"] if url else [tmp_path / "shared"] * 2
    commands = [sweep_command(data, outs[0], "--trials", str(jobs), "--jobs", str(jobs)),
                sweep_command(data, outs[1], "--trials", "1")]
    procs = [subprocess.Popen(cmd + (["--storage", url] if url else []), cwd=HERE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for cmd in commands]
    (out_a, err_a), (out_b, err_b) = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0] and err_a + err_b == "", err_a + err_b
    # each counts its own trials, not the study's
    assert all(f"({k} of {jobs} here)" in out_a for k in range(1, jobs + 1)) and "(1 of 1 here)" in out_b
    done = trials(url or outs[0], waiting=True)
    assert [t.state for t in done] == [TrialState.COMPLETE] * (jobs + 1) + [TrialState.WAITING] * (
        len(sweep.FIRST) - jobs - 1)  # FIRST queued once, not twice
    assert all(list(t.user_attrs["finals"]) == ["1", "2"] for t in done[:jobs + 1])
    assert len({t.user_attrs["worker"] for t in done[:jobs + 1]}) == jobs + 1  # --jobs 2: two worker processes
    assert all((out / "sweep.md").is_file() for out in outs) and not list(tmp_path.rglob("*.tmp"))


def test_interrupting_the_parent_of_two_workers_leaves_no_trial_running(data, tmp_path, capfd):
    """SIGINT to the parent alone (kill -INT; a terminal's Ctrl-C reaches the workers too): it stops its workers,
    their trials end FAIL, not RUNNING, and it says so in one line."""
    started, stop = threading.Event(), threading.Event()

    def interrupt_once_both_train():
        while len(list(tmp_path.glob("trials/*/seed_1/metrics.json"))) < 2 and not stop.wait(0.1):
            pass  # an epoch ended in each worker's trial
        if not stop.is_set():
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


def test_a_trial_that_fails_is_reported_and_the_study_goes_on(data, tmp_path, capsys, monkeypatch):
    real_run = train.run

    def diverges_with_small_batches(run_args, *rest, **kwargs):
        if run_args.batch_size == 64:
            raise train.Fail("loss became nan at epoch 0, step 1: lower --lr", code=3)
        return real_run(run_args, *rest, **kwargs)

    monkeypatch.setattr(train, "run", diverges_with_small_batches)
    code, out, err = run_sweep(capsys, "--data-dir", data, "--out-dir", tmp_path, "--trials", 2, *FAST)
    assert code == 0 and err == ""
    assert "trial 1 (2 of 2 here): fail (loss became nan at epoch 0, step 1: lower --lr)" in out
    assert [t.state for t in trials(tmp_path)] == [TrialState.COMPLETE, TrialState.FAIL]


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
def postgres_url():
    """A throwaway PostgreSQL cluster listening on a unix socket only (no port to collide on), with a
    database 'sweep'; stopped and removed at the end. Run as the postgres user where the tests run as root
    (initdb refuses root)."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        pytest.skip("PostgreSQL server binaries (initdb, pg_ctl) not found: apt-get install postgresql")
    psycopg = pytest.importorskip("psycopg", reason='PostgreSQL driver not installed: pip install "psycopg[binary]"')
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
        with psycopg.connect(host=str(root), user="postgres", dbname="postgres", autocommit=True) as db:
            db.execute("CREATE DATABASE sweep")
        yield f"postgresql+psycopg://postgres@/sweep?host={root}"
    finally:
        if (cluster / "postmaster.pid").exists():
            pg(bin_dir / "pg_ctl", "-D", cluster, "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)
