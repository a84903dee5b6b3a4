"""Recipe studies on Optuna: sample a train.py recipe, train it on several seeds, score it by its weakest side.

    python sweep.py --data-dir ../shared/data --out-dir runs/sweep --trials 40 --seeds 101-105
    python sweep.py --out-dir runs/sweep --report                       # sweep.md + sweep.png, nothing trained
    python sweep.py --data-dir ../shared/data --out-dir runs/sweep --confirm 3 --seeds 1-20

Trials train on 50,000 training images and are scored on the other 10,000 (train.py --validation): the
test set is never looked at while searching; only --confirm reads it, to report the chosen recipes.
The study lives in its storage (default: an SQLite file in --out-dir), so the same command continues it,
and any process or machine given the same --storage and --study-name joins it.
"""
import contextlib
import io
import json
import multiprocessing
import os
import random
import signal
import socket
import statistics
import sys
import time
import warnings
from pathlib import Path

import torch

import mnist
import plots
import rundir
import train

warnings.filterwarnings("ignore", message=".*experimental feature.*")  # Optuna's heartbeat: stable in use

# The search space: train.py flags and their ranges. ("log", lo, hi) and ("float", lo, hi) are continuous,
# ("int", lo, hi) inclusive, ("choice", a, b, ...) categorical.
SPACE = {
    "lr": ("log", 0.02, 0.2),
    "nesterov": ("choice", False, True),
    "batch_size": ("choice", 64, 128),
    "weight_decay": ("log", 2e-4, 5e-3),
    "bn_decay": ("choice", True, False),
    "step_size": ("int", 3, 8),
    "gamma": ("choice", 0.1, 0.2, 0.3),
    "rotation": ("float", 3.0, 12.0),
    "shift": ("choice", 0.0, 0.5, 1.0),
    "scale": ("choice", 0.0, 0.05, 0.1),
    "average_epochs": ("int", 0, 9),
    "ema": ("choice", 0.0, 0.999),
    "bn_images": ("choice", 10000, 60000),
    "snapshots": ("choice", 1, 4),
    "label_smoothing": ("choice", 0.0, 0.05, 0.1),
}
# Recipes every new study tries first (changes to train.py's defaults): today's default, then the ideas
# worth a direct look; the sampler takes over from there. Today's default came out of two rounds (README,
# "How the default recipe was chosen"): round 1 tried batch 64, snapshots, no BN decay, wd 2e-3, shift +
# scale and label smoothing on the old default; round 2 combined the leaders. Round 3 tried these on today's
# default (batch 64 takes twice the steps of batch 128, so lr and weight decay act twice as much per epoch; a
# longer last phase to average; denser snapshots; all 60,000 images for BatchNorm; more rotation; Nesterov):
# none beat it by more than the noise.
FIRST = [
    {},
    {"lr": 0.03},
    {"weight_decay": 5e-4},
    {"step_size": 5, "average_epochs": 5},
    {"snapshots": 4},
    {"bn_images": 60000},
    {"rotation": 10.0},
    {"nesterov": True},
]
VALIDATION = 10000  # held-out training images that score the trials (train.py --validation)
START_METHOD = "spawn"  # --jobs: each worker a fresh interpreter (CUDA cannot be forked)
SCORE = "mean - 2 std"  # of the seeds' final validation accuracies: high only if every seed is high


def score(finals):
    return statistics.mean(finals) - 2 * (statistics.stdev(finals) if len(finals) > 1 else 0.0)


def parse_args(argv=None):
    p = train.ArgumentParser(prog="sweep.py",
                             description="Search train.py recipes with Optuna, scored on held-out training images.")
    p.add_argument("--data-dir", default="./data", help="folder holding MNIST/raw (default: %(default)s)")
    p.add_argument("--out-dir", default="./sweep", help="study database, report and trial logs (default: %(default)s)")
    p.add_argument("--trials", type=int, default=20, help="trials this command adds to the study (default: %(default)s)")
    p.add_argument("--seeds", type=train.parse_seeds, default=train.parse_seeds("101-105"), metavar="LIST",
                   help="seeds every trial trains on (default: 101-105)")
    p.add_argument("--copies", type=int, default=1, metavar="K",
                   help="train K copies of the network per seed, side by side (train.py --copies): each trial is "
                        "scored on seeds x K networks; on a GPU a seed costs about one run (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=train.EPOCHS, help="epochs per run (default: %(default)s)")
    p.add_argument("--precision", choices=["auto", "bf16", "fp32"], default="auto",
                   help="train.py --precision of every run: a recipe is tuned in the precision its users get "
                        "(default: %(default)s)")
    p.add_argument("--validation", type=int, default=VALIDATION, metavar="N",
                   help="held-out training images that score the trials (default: %(default)s)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="Optuna storage (default: sqlite:///OUT_DIR/sweep.db); e.g. "
                        "postgresql+psycopg://user:password@host/db for a study shared by several machines")
    p.add_argument("--study-name", default="mnist-recipe", help="study to run or join (default: %(default)s)")
    p.add_argument("--jobs", type=int, default=1,
                   help="worker processes on this machine, each with its share of torch's threads (the cores, "
                        "or OMP_NUM_THREADS) (default: %(default)s)")
    p.add_argument("--device", choices=["auto", "cpu", "cuda", "mps"], default="auto", help="(default: %(default)s)")
    p.add_argument("--no-prune", action="store_true", help="train every trial on every seed")
    p.add_argument("--report", action="store_true", help="only write sweep.md and sweep.png from the stored trials")
    p.add_argument("--confirm", type=int, default=0, metavar="K",
                   help="retrain the best K recipes on all 60,000 images and report test accuracy on --seeds")
    args = p.parse_args(argv)
    for name in ("trials", "epochs", "jobs", "copies"):
        if getattr(args, name) < 1:
            raise train.Fail(f"--{name} must be >= 1 (got {getattr(args, name)})")
    if args.confirm < 0:
        raise train.Fail(f"--confirm must be >= 0 (got {args.confirm})")
    args.out_dir = Path(args.out_dir)
    args.storage = args.storage or f"sqlite:///{args.out_dir / 'sweep.db'}"
    return args


# ---------------------------------------------------------------------------------------------
# the study

def open_study(args, create=True, queue=False):
    """Create or join the study; refuse one whose trials train otherwise (check_settings). A new study gets FIRST's
    recipes queued; queue: also queue again those an interrupted run left (see queue_first_recipes).
    create=False: load an existing one, for --report and --confirm."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.ERROR)  # failed trials show in the progress lines
    storage = connect(args.storage)
    if not create:
        try:
            return optuna.load_study(study_name=args.study_name, storage=storage)
        except KeyError:
            raise train.Fail(f"no study '{args.study_name}' in {shown(args.storage)}: check --study-name and "
                             "--storage, or run a study first")
    pruner = optuna.pruners.PercentilePruner(25, n_startup_trials=len(FIRST)) if not args.no_prune \
        else optuna.pruners.NopPruner()
    kwargs = {"study_name": args.study_name, "storage": storage, "pruner": pruner,
              "sampler": optuna.samplers.TPESampler(multivariate=True, constant_liar=True)}
    try:
        study, created = optuna.create_study(direction="maximize", **kwargs), True
    except optuna.exceptions.DuplicatedStudyError:  # exists, or another process is creating it right now
        study, created = optuna.load_study(**kwargs), False
    if created:
        queue_first_recipes(study, created)  # before the settings: they tell joining processes it is ready
    else:
        wait_for_creator(study)
    check_settings(study, args)
    if queue and not created:
        queue_first_recipes(study, created)
    return study


def wait_for_creator(study, seconds=30):
    """A process that joins a study its creator has not set up yet would start a sampled trial ahead of the
    queued first recipes: wait for the creator's settings (for a while: it may have died)."""
    deadline = time.time() + seconds
    while "space" not in study.user_attrs and time.time() < deadline:
        time.sleep(0.2)


def connect(url):
    """Optuna's storage at url, its problems as one line. Two processes that start on a new database at once
    both create its tables, and the slower one fails (a unique or 'already exists' error): it tries again."""
    import optuna
    import sqlalchemy

    # a killed worker's trial is marked failed (by the next run to start a trial), not left running
    kwargs = {"heartbeat_interval": 60, "grace_period": 180}
    if url.startswith("sqlite"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 120}}  # wait out other writers (optuna issue 820)
    elif url.startswith("postgresql"):
        kwargs["engine_kwargs"] = {"connect_args": {"connect_timeout": 10}}  # a host that never answers: fail
    for attempt in range(5):
        try:
            storage = optuna.storages.RDBStorage(url, **kwargs)
            return one_writer_at_a_time(storage) if url.startswith("sqlite") else storage
        except sqlalchemy.exc.ArgumentError:  # unparsable, or an unknown database kind
            raise train.Fail(f"--storage {shown(url)} is not a storage URL: pass e.g. sqlite:///path/sweep.db or "
                             "postgresql+psycopg://user:password@host/database")
        except ImportError as e:
            raise train.Fail(f"--storage {shown(url)} needs a database driver that is not installed "
                             f"({first_line(e.__cause__ or e)}): for PostgreSQL, pip install \"psycopg[binary]\" "
                             "and write the URL as postgresql+psycopg://user:password@host/database")
        except Exception as e:  # sqlalchemy's connection errors, the drivers' own
            if attempt < 4 and (isinstance(e, sqlalchemy.exc.IntegrityError) or "already exists" in str(e)):
                time.sleep(random.uniform(0.2, 1.0))
                continue
            raise train.Fail(f"--storage {shown(url)} cannot be used ({first_line(e)}): check that the database "
                             "server runs and the URL's host, port, user, password and database (for SQLite: "
                             "that the folder exists)")


def one_writer_at_a_time(storage):
    """SQLite ignores the SELECT ... FOR UPDATE by which Optuna hands a queued trial to one process: 4 processes
    taking 40 queued trials at once got 6 of them twice. So every transaction takes the write lock as it begins
    (BEGIN IMMEDIATE, SQLAlchemy's recipe for pysqlite): they run one after another, each a few milliseconds."""
    import sqlalchemy

    @sqlalchemy.event.listens_for(storage.engine, "connect")
    def no_implicit_begin(dbapi_connection, record):
        dbapi_connection.isolation_level = None  # else sqlite3 begins a deferred transaction on its own

    @sqlalchemy.event.listens_for(storage.engine, "begin")
    def begin_immediate(connection):
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    storage.engine.dispose()  # the connections opened before this would keep the old way
    return storage


def shown(url):
    """The storage URL with its password masked, for messages and the log."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL: it says so elsewhere
        return url


def first_line(e):
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def check_settings(study, args):
    """Scores compare only trials trained alike: the study keeps the search space and the settings (seeds,
    copies, epochs, held-out images, precision) its trials train with, and once one has finished, a run that
    would train otherwise is refused."""
    from optuna.trial import TrialState

    settings = ("seeds", "copies", "epochs", "validation", "precision")  # sweep.py flags of the same names
    wanted = {"space": json.loads(json.dumps(SPACE)),  # as stored: tuples become lists
              **{name: getattr(args, name) for name in settings}}
    stored = study.user_attrs
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):  # none to compare
        for name, value in wanted.items():
            study.set_user_attr(name, value)
        return
    if stored["space"] != wanted["space"]:
        raise train.Fail(f"study '{args.study_name}' in {shown(args.storage)} was made with another search space: "
                         "pass a new --study-name (or another --storage) for this one")
    flag = lambda v: ",".join(map(str, v)) if isinstance(v, list) else str(v)
    for name in settings:
        if stored.get(name, wanted[name]) != wanted[name]:
            raise train.Fail(f"study '{args.study_name}' trains its trials with --{name} {flag(stored[name])}, not "
                             f"{flag(wanted[name])}: pass --{name} {flag(stored[name])} to continue it, or a new "
                             "--study-name")


def queue_first_recipes(study, created):
    """Queue FIRST's recipes: all of them in a new study; later, those whose trial failed (was interrupted) and
    that no other trial has taken up since. Only the process that created the study queues them all: two
    processes starting one at once would both queue them."""
    from optuna.trial import TrialState

    def recipes(*states):
        return [t.system_attrs.get("fixed_params") or t.params for t in study.get_trials(deepcopy=False, states=states)]

    failed = recipes(TrialState.FAIL)
    taken = recipes(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    defaults = train.parse_args([])
    for changes in FIRST:
        params = {name: changes.get(name, getattr(defaults, name)) for name in SPACE}
        if created or (params in failed and params not in taken):
            study.enqueue_trial(params)


def suggest(trial):
    recipe = {}
    for name, (kind, *values) in SPACE.items():
        if kind == "choice":
            recipe[name] = trial.suggest_categorical(name, values)
        elif kind == "int":
            recipe[name] = trial.suggest_int(name, *values)
        else:
            recipe[name] = trial.suggest_float(name, *values, log=kind == "log")
    return recipe


def recipe_flags(recipe):
    """A recipe as train.py flags: {'lr': 0.05, 'bn_decay': False} -> ['--lr', '0.05', '--no-bn-decay']."""
    flags = []
    for name, value in recipe.items():
        flag = "--" + name.replace("_", "-")
        flags += [flag if value else "--no-" + flag[2:]] if isinstance(value, bool) else \
            [flag, f"{value:.4g}" if isinstance(value, float) else str(value)]
    return flags


def objective(trial, args, device, data):
    """Train the trial's recipe on every seed (held-out images as the test set); returns its score."""
    import optuna

    trial.set_user_attr("worker", worker_name(os.getpid()))  # whose trial: see fail_left_running
    flags = recipe_flags(suggest(trial)) + ["--validation", str(args.validation), "--copies", str(args.copies),
                                            "--precision", args.precision]
    try:
        run_args = train_args(flags, args, device)
    except train.Fail as e:  # a space train.py refuses: says why in the report
        trial.set_user_attr("error", str(e))
        raise
    finals, at_target = {}, {}
    for i, seed in enumerate(args.seeds):
        def report(record, step0=i * args.epochs):
            trial.report(record["test_acc"], step0 + record["epoch"])

        out_dir = rundir.prepare_out_dir(args.out_dir / "trials" / f"{trial.number:04d}" / f"seed_{seed}")
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # the per-run log: trial lines are the progress
                # no curves.png: a study's runs are many, and sweep.png shows them together
                metrics = train.run(run_args, seed, out_dir, device, data, on_epoch=report, plot=False)
        except train.Fail as e:  # e.g. the loss diverged: the trial fails, the study goes on
            trial.set_user_attr("error", str(e))
            raise
        for name, run in copy_runs(metrics, seed):
            finals[name], at_target[name] = run["final_test_acc"], run["epochs_at_target"]
        trial.set_user_attr("finals", finals)
        trial.set_user_attr("epochs_at_target", at_target)
        # ask the pruner only at a seed's end (earlier epochs compare schedules, not recipes), and not after
        # the last one: a trial trained on every seed has earned its score
        if i < len(args.seeds) - 1 and trial.should_prune():
            raise optuna.TrialPruned()
    return score(list(finals.values()))


def copy_runs(metrics, seed):
    """(name, metrics) of each network a run trained: 'SEED', or with --copies 'SEED.K' for copy K."""
    if metrics["copies"] == 1:
        return [(str(seed), metrics)]
    return [(f"{seed}.{r['copy']}", r) for r in metrics["copy_runs"]]


def train_args(flags, args, device):
    run_args = train.parse_args(flags + ["--epochs", str(args.epochs), "--device", args.device])
    run_args.precision, run_args.precision_why = train.pick_precision(run_args.precision, device)
    return run_args


class Progress:
    """An Optuna callback: a line per finished trial, counting the trials of this command (all its workers
    share the counter), not the study's, which other processes and machines add to."""

    def __init__(self, total, context=multiprocessing):
        self.total, self.start, self.done = total, time.time(), context.Value("i", 0)

    def __call__(self, study, trial):
        with self.done.get_lock():
            self.done.value += 1
            done = self.done.value
        elapsed = time.time() - self.start
        left = elapsed / done * max(self.total - done, 0)
        finals = " ".join(f"{v:.2f}" for v in trial.user_attrs.get("finals", {}).values())
        if trial.state.name == "COMPLETE":
            value = f"score {trial.value:.3f}"
        else:  # a pruned trial's value is its last accuracy, not a score
            error = trial.user_attrs.get("error")
            value = trial.state.name.lower() + (f" ({error})" if error else "")
        print(f"trial {trial.number} ({done} of {self.total} here): {value}  seeds {finals}  "
              f"{' '.join(recipe_flags(trial.params))}  [{elapsed / 60:.1f} min, ~{left / 60:.1f} min left]",
              flush=True)


def work(args, n_trials, threads, progress):
    """Load the data once, then run n_trials trials of the shared study."""
    torch.set_num_threads(threads)
    device = train.pick_device(args.device)
    study = open_study(args)
    data = mnist.hold_out(mnist.load_mnist(args.data_dir, device), args.validation)
    study.optimize(lambda t: objective(t, args, device, data), n_trials=n_trials, callbacks=[progress],
                   catch=(train.Fail,))


def worker(args, n_trials, threads, progress, stopping, errors):
    """A worker process (--jobs > 1): work() until done, stopped or failed; its problem goes to the parent,
    which prints the one line."""
    signal.signal(signal.SIGINT, interrupt_once)  # it started deaf to Ctrl-C (run_workers): listen from here
    if stopping.is_set():  # the parent was interrupted while this one started
        return
    try:
        work(args, n_trials, threads, progress)
    except KeyboardInterrupt:  # Optuna has marked the running trial failed; the parent reports the stop
        pass
    except train.Fail as e:
        errors.put((str(e), e.code))
        sys.exit(e.code)


def interrupt_once(signum, frame):
    """A worker's first SIGINT stops it; a second one (the terminal's Ctrl-C and then the parent's) must not
    cut short its marking the trial failed."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    raise KeyboardInterrupt


def run_study(args):
    study = open_study(args, queue=True)  # created (and its first recipes queued) once, before the workers join
    started = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    shares = [args.trials // args.jobs + (k < args.trials % args.jobs) for k in range(args.jobs)]
    threads = max(1, torch.get_num_threads() // args.jobs)  # torch's own: the cores, or OMP_NUM_THREADS
    print(f"study '{args.study_name}' in {shown(args.storage)}: {started} trials so far; adding {args.trials} "
          f"with {args.jobs} worker(s) x {threads} thread(s), seeds {args.seeds}{copies_note(args.copies)}, "
          f"{args.epochs} epochs, precision {args.precision}", flush=True)
    if args.jobs == 1:
        try:
            work(args, args.trials, threads, Progress(args.trials))
        finally:
            fail_left_running(study, [os.getpid()])
    else:
        run_workers(args, study, [n for n in shares if n], threads)


def run_workers(args, study, shares, threads):
    ctx = multiprocessing.get_context(START_METHOD)
    progress, stopping, errors = Progress(args.trials, ctx), ctx.Event(), ctx.SimpleQueue()
    workers = [ctx.Process(target=worker, args=(args, n, threads, progress, stopping, errors)) for n in shares]
    default = signal.signal(signal.SIGINT, signal.SIG_IGN)  # inherited: no Ctrl-C traceback from an importing worker
    try:
        for w in workers:
            w.start()
    finally:
        signal.signal(signal.SIGINT, default)
    try:
        for w in workers:
            w.join()
    except KeyboardInterrupt:
        stop_workers(workers, stopping)
        raise
    finally:
        fail_left_running(study, [w.pid for w in workers if w.pid])
    failed = [w.exitcode for w in workers if w.exitcode]
    if not errors.empty():
        raise train.Fail(*errors.get())  # every worker meets the same bad input: one line for all
    if failed:
        raise train.Fail(f"{len(failed)} worker(s) failed (exit codes {', '.join(map(str, failed))}): "
                         "see their errors above")


def stop_workers(workers, stopping, grace=30):
    """After Ctrl-C: stop every worker (a terminal's Ctrl-C reached them too; a kill -INT of this process did
    not), give each time to mark its trial failed, then end it."""
    default = signal.signal(signal.SIGINT, signal.SIG_IGN)  # another Ctrl-C must not cut this short
    try:
        stopping.set()
        for w in workers:
            if w.is_alive():
                os.kill(w.pid, signal.SIGINT)
        deadline = time.time() + grace
        for w in workers:
            w.join(max(0.0, deadline - time.time()))
            if w.is_alive():  # stuck, e.g. on the database: fail_left_running marks its trial
                w.terminate()
                w.join()
    finally:
        signal.signal(signal.SIGINT, default)


def worker_name(pid):
    return f"{socket.gethostname()}:{pid}"


def fail_left_running(study, pids):
    """Mark failed the trials these processes left running (interrupted while recording one, or killed):
    else they stay RUNNING until a later run of the study finds their heartbeat stale."""
    from optuna.trial import TrialState

    names = {worker_name(pid) for pid in pids}
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if t.user_attrs.get("worker") in names:
            study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)


# ---------------------------------------------------------------------------------------------
# report

def trial_rows(study):
    """Finished trials as dicts, best score first (pruned and failed ones last)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if not t.state.is_finished():
            continue
        finals = list(t.user_attrs.get("finals", {}).values())
        rows.append({"number": t.number, "state": t.state.name.lower(), "params": t.params, "finals": finals,
                     "mean": statistics.mean(finals) if finals else None, "min": min(finals) if finals else None,
                     "score": t.value if t.state.name == "COMPLETE" else None})  # a pruned one's: an accuracy
    return sorted(rows, key=lambda r: (r["score"] is None, -(r["score"] or 0), -(r["mean"] or 0)))


def write_report(study, args):
    rows = trial_rows(study)
    seeds = study.user_attrs.get("seeds", [])
    changed = [n for n in SPACE if len({repr(r["params"].get(n)) for r in rows}) > 1]  # columns worth showing
    lines = [f"# Study '{args.study_name}'", "",
             f"{len(rows)} finished trials; each trains with seeds {', '.join(map(str, seeds))}"
             f"{copies_note(study.user_attrs.get('copies', 1))}, precision "
             f"{study.user_attrs.get('precision', 'auto')}, on the training "
             f"images less {study.user_attrs.get('validation', '?'):,} held out, and is scored on those held-out images "
             f"(never the test set). Score: {SCORE} of the seeds' final validation accuracies.", ""]
    complete = [r for r in rows if r["state"] == "complete"]
    if complete:
        best = complete[0]
        lines += ["Best recipe:", "", "```bash",
                  "python train.py " + " ".join(recipe_flags(best["params"])), "```", ""]
    lines += ["| trial | state | score | mean % | min % | seeds' final % | " + " | ".join(changed) + " |",
              "|" + " --- |" * (6 + len(changed))]
    number = lambda v, digits=3: "" if v is None else f"{v:.{digits}f}"
    param = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    failed = [r for r in rows if r["state"] == "fail"]  # listed as a count: they have no results to show
    for r in rows:
        if r["state"] == "fail":
            continue
        lines.append(f"| {r['number']} | {r['state']} | {number(r['score'])} | {number(r['mean'])} | "
                     f"{number(r['min'], 2)} | {' '.join(f'{v:.2f}' for v in r['finals'])} | "
                     + " | ".join(param(r["params"].get(n, "")) for n in changed) + " |")
    if failed:
        first = min(r["number"] for r in failed)
        error = study.get_trials(deepcopy=False)[first].user_attrs.get("error", "interrupted")  # trials by number
        lines += ["", f"{len(failed)} failed trial(s) not listed; the first: trial {first}, {error}"]
    md = args.out_dir / "sweep.md"
    rundir.write_atomic(md, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    if complete:
        plot_study(rows, args.out_dir / "sweep.png")
    return md


def copies_note(copies):
    return f" ({copies} copies of the network per seed, side by side: train.py --copies {copies})" if copies > 1 else ""


def plot_study(rows, path):
    """Score per trial with the best so far, and the per-seed finals of the 10 best trials."""
    plt = plots.pyplot()
    fig, (ax_hist, ax_best) = plt.subplots(1, 2, figsize=(13, 4.5))
    done = sorted((r for r in rows if r["score"] is not None), key=lambda r: r["number"])
    numbers = [r["number"] for r in done]
    ax_hist.scatter(numbers, [r["score"] for r in done], s=14, label="trial score")
    best = [max(r["score"] for r in done[:k + 1]) for k in range(len(done))]
    ax_hist.step(numbers, best, where="post", color="C1", label="best so far")
    ax_hist.set_xlabel("trial"), ax_hist.set_ylabel(f"score ({SCORE}), %"), ax_hist.grid(alpha=0.3)
    ax_hist.legend(fontsize="small")
    top = [r for r in rows if r["score"] is not None][:10]
    for k, r in enumerate(top):
        ax_best.scatter([k] * len(r["finals"]), r["finals"], s=14, color="C0")
        ax_best.scatter([k], [r["mean"]], marker="_", s=300, color="C1")
    ax_best.set_xticks(range(len(top)), [str(r["number"]) for r in top])
    ax_best.set_xlabel("trial (best first)"), ax_best.set_ylabel("final validation accuracy per seed, %")
    ax_best.grid(alpha=0.3)
    plots.save_figure(fig, "recipe study", path)


def confirm(study, args):
    """Retrain the best --confirm recipes on all training images and report test accuracy on --seeds."""
    device = train.pick_device(args.device)
    data = mnist.load_mnist(args.data_dir, device)
    best = [r for r in trial_rows(study) if r["state"] == "complete"][:args.confirm]
    for r in best:
        run_args = train_args(recipe_flags(r["params"]), args, device)
        # a str, as train.py keeps it: metrics.json records the args
        run_args.seeds, run_args.out_dir = args.seeds, str(args.out_dir / "confirm" / f"trial_{r['number']:04d}")
        print(f"confirming trial {r['number']} on the test set: python train.py {' '.join(recipe_flags(r['params']))}"
              f" --epochs {args.epochs} --seeds {','.join(map(str, args.seeds))}", flush=True)
        with contextlib.redirect_stdout(io.StringIO()):
            summary = train.run_seeds(run_args, device, data)
        print(train.format_seed_summary(summary), flush=True)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    return train.exit_status(lambda: sweep(argv), lambda e: print(
        "\ninterrupted: finished trials are in the study; run the same command to continue it", file=sys.stderr))


def sweep(argv):
    args = parse_args(argv)
    rundir.prepare_out_dir(args.out_dir)
    if args.report or args.confirm:
        study = open_study(args, create=False)
    else:
        run_study(args)
        study = open_study(args, create=False)
    if args.confirm:
        confirm(study, args)
    print(f"report: {write_report(study, args)}")


if __name__ == "__main__":
    sys.exit(main())
