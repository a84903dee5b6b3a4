"""Recipe search on Optuna: sample a train.py recipe, train it on several seeds, score it by its weakest side.

    python -m research.sweep --data-dir ../shared/data --out-dir runs/sweep --trials 40 --seeds 101-105
    python -m research.sweep --out-dir runs/sweep --report                  # sweep.md and plots, nothing trained
    python -m research.sweep --data-dir ../shared/data --out-dir runs/sweep --confirm 3 --seeds 1-20
    optuna-dashboard runs/sweep/sweep.journal                               # the study in a browser

Trials train on the training images less --validation 10,000 held out, and are scored on those (never the test
set); only --confirm reads the test set, to report the chosen recipes. A trial's score is the mean - 2 std of
its seeds' final validation accuracies: high only if every seed is high.

The study lives in its storage: by default Optuna's journal file OUT_DIR/sweep.journal, which several processes
on one machine share; with --storage URL (postgresql+psycopg://user:password@host/db) an Optuna RDB that
several machines share. To search with several processes, run the same command several times, e.g.
`for i in 1 2 3 4; do OMP_NUM_THREADS=1 python -m research.sweep ... & done; wait`: each adds --trials trials.
A worker killed outright (SIGKILL, the OOM killer) leaves its trial running: in the journal, the next worker to
start or to finish a trial on that machine sees that the trial's process is gone; on an RDB, its heartbeat stops.
Either way the trial is failed and its recipe queued again (RETRIES times at most).
"""
import dataclasses
import json
import os
import random
import shlex
import signal
import socket
import statistics
import sys
import time
import warnings
from pathlib import Path

import optuna
from optuna.trial import TrialState

import mnist
import plots
import rundir
import train
from batch import seed_runs
from device import DEVICES, PRECISIONS, device_name
from errors import Fail, exit_status

# heartbeats, the retry callback and the matplotlib plots are "experimental" to Optuna: stable in use here
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

# The search space, keyed by train.Recipe's fields. ("log", lo, hi) and ("float", lo, hi) are continuous,
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
# A knob asked for only when it acts, given the knobs sampled before it: snapshots only feed an equal-weight
# average (train.averaging_steps), so with an EMA the sampler would search a dimension that changes nothing.
ASKED_IF = {"snapshots": lambda params: params["ema"] == 0}
# Recipes every study tries first, as changes to train.py's default: the default itself, then the ideas worth a
# direct look (a lower lr and weight decay: batch 64 takes twice the steps of 128; a longer last phase to
# average; equal-weight snapshots instead of the EMA; all 60,000 images for BatchNorm; more rotation; Nesterov).
# The sampler takes over from there.
FIRST = [
    {},
    {"lr": 0.03},
    {"weight_decay": 5e-4},
    {"step_size": 5, "average_epochs": 5},
    {"ema": 0.0, "snapshots": 4},
    {"bn_images": 60000},
    {"rotation": 10.0},
    {"nesterov": True},
]
KNOBS = {f.name for f in dataclasses.fields(train.Recipe)}
if not set(SPACE) <= KNOBS or not set(ASKED_IF) <= set(SPACE) or not all(set(c) <= set(SPACE) for c in FIRST):
    raise NameError(f"sweep's SPACE, ASKED_IF and FIRST must name train.Recipe fields ({', '.join(sorted(KNOBS))})")

VALIDATION = 10000  # held-out training images that score the trials
SCORE = "mean - 2 std"  # of the seeds' final validation accuracies
# a worker that dies without a word (killed, its machine gone) stops beating: after the grace period the next
# trial to start anywhere marks its trial failed and queues it again (RDB storages only: Optuna's journal has no
# heartbeat, and retry_trials_of_killed_workers does that job there)
HEARTBEAT = {"heartbeat_interval": 60, "grace_period": 180}
RETRIES = 2  # times a killed worker's recipe is queued again: one that kills every worker (memory) is given up
SETTINGS = ("seeds", "copies", "epochs", "validation", "precision")  # flags of the same names


def score(finals):
    return statistics.mean(finals) - 2 * (statistics.stdev(finals) if len(finals) > 1 else 0.0)


def parse_args(argv=None):
    p = train.ArgumentParser(prog="python -m research.sweep",
                             description="Search train.py recipes with Optuna, scored on held-out training images.")
    p.add_argument("--data-dir", default="./data", help="folder holding MNIST/raw (default: %(default)s)")
    p.add_argument("--out-dir", default="./sweep", help="study journal, report and trial results (default: %(default)s)")
    p.add_argument("--trials", type=int, default=20, help="trials this command adds to the study (default: %(default)s)")
    p.add_argument("--seeds", type=train.parse_seeds, default=train.parse_seeds("101-105"), metavar="LIST",
                   help="seeds every trial trains on (default: 101-105)")
    p.add_argument("--copies", type=int, default=1, metavar="K",
                   help="train K copies of the network per seed, side by side (train.py --copies): each trial is "
                        "scored on seeds x K networks; on a GPU a seed costs about one run (default: %(default)s)")
    p.add_argument("--epochs", type=int, default=train.Recipe.epochs, help="epochs per run (default: %(default)s)")
    p.add_argument("--precision", choices=PRECISIONS, default="auto",
                   help="of every run; auto is resolved on this machine, and a study keeps one precision "
                        "(default: %(default)s)")
    p.add_argument("--validation", type=int, default=VALIDATION, metavar="N",
                   help="held-out training images that score the trials (default: %(default)s)")
    p.add_argument("--storage", default=None, metavar="URL",
                   help="an Optuna RDB storage shared by several machines, e.g. postgresql+psycopg://user:password@"
                        "host/db (default: the journal file OUT_DIR/sweep.journal, for the processes of one machine)")
    p.add_argument("--study-name", default="mnist-recipe", help="study to run or join (default: %(default)s)")
    p.add_argument("--device", choices=DEVICES, default="auto", help="(default: %(default)s)")
    p.add_argument("--no-prune", action="store_true", help="train every trial on every seed")
    p.add_argument("--report", action="store_true", help="only write sweep.md and the plots from the stored trials")
    p.add_argument("--confirm", type=int, default=0, metavar="K",
                   help="retrain the best K recipes on all training images and report test accuracy on --seeds")
    args = p.parse_args(argv)
    if args.trials < 1:
        raise Fail(f"--trials must be >= 1 (got {args.trials})")
    if args.confirm < 0:
        raise Fail(f"--confirm must be >= 0 (got {args.confirm})")
    args.out_dir = Path(args.out_dir)
    return args


# ---------------------------------------------------------------------------------------------
# the study

def open_storage(args):
    """Optuna's storage for the study, its problems as one line."""
    if args.storage is None:  # one file that the processes of this machine append to, each under a lock
        backend = optuna.storages.journal.JournalFileBackend(str(args.out_dir / "sweep.journal"))
        return optuna.storages.JournalStorage(backend)
    import sqlalchemy

    connect = {"connect_timeout": 10} if args.storage.startswith("postgresql") else {}  # a host that never answers
    try:
        for attempt in range(5):
            try:
                return optuna.storages.RDBStorage(
                    args.storage, engine_kwargs={"connect_args": connect}, **HEARTBEAT,
                    heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=RETRIES))
            except sqlalchemy.exc.IntegrityError:
                # processes that start on a new PostgreSQL database at once all create its tables, and all but
                # one fail on a unique index of the catalog: by now the tables are there
                if attempt == 4:
                    raise
                time.sleep(random.uniform(0.2, 1.0))
    except sqlalchemy.exc.ArgumentError:  # unparsable, or an unknown database kind
        raise Fail(f"--storage {shown(args.storage)} is not a storage URL: pass e.g. "
                   "postgresql+psycopg://user:password@host/database, or no --storage for a journal file in --out-dir")
    except ImportError as e:
        raise Fail(f"--storage {shown(args.storage)} needs a database driver that is not installed "
                   f"({first_line(e.__cause__ or e)}): for PostgreSQL, pip install \"psycopg[binary]\" "
                   "and write the URL as postgresql+psycopg://user:password@host/database")
    except Exception as e:  # sqlalchemy's connection errors, the drivers' own
        raise Fail(f"--storage {shown(args.storage)} cannot be used ({first_line(e)}): check that the database "
                   "server runs and the URL's host, port, user, password and database (for SQLite: that the "
                   "folder exists)")


def where(args):
    return shown(args.storage) if args.storage else str(args.out_dir / "sweep.journal")


def shown(url):
    """The storage URL with its password masked, for messages and the log."""
    import sqlalchemy

    try:
        return sqlalchemy.engine.make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL: it says so elsewhere
        return url


def first_line(e):
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def load_study(args):
    """An existing study, for --report and --confirm."""
    if args.storage is None and not (args.out_dir / "sweep.journal").exists():  # opening it would create it
        raise Fail(f"no study in {args.out_dir}: pass the --out-dir (or --storage) of a study, or run one first")
    try:
        return optuna.load_study(study_name=args.study_name, storage=open_storage(args))
    except KeyError:
        raise Fail(f"no study '{args.study_name}' in {where(args)}: check --study-name and --storage, or run a "
                   "study first")


def open_study(args, base):
    """Create or join the study, with FIRST's recipes queued (once: enqueue_trial skips a recipe the study has)."""
    pruner = optuna.pruners.NopPruner() if args.no_prune else \
        optuna.pruners.PercentilePruner(25, n_startup_trials=len(FIRST))
    # group: TPE models the trials that asked for snapshots apart from those that did not (ASKED_IF)
    sampler = optuna.samplers.TPESampler(multivariate=True, group=True, constant_liar=True)
    study = optuna.create_study(study_name=args.study_name, storage=open_storage(args), direction="maximize",
                                pruner=pruner, sampler=sampler, load_if_exists=True)
    # processes started together would each see a recipe missing and queue it: on one machine they take turns
    # (several machines rarely start within the same milliseconds; at worst a first recipe trains twice)
    lock = optuna.storages.journal.JournalFileOpenLock(str(args.out_dir / "sweep.journal.first")) \
        if args.storage is None else None
    if lock:
        lock.acquire()
    try:
        for params in first_params(base):
            study.enqueue_trial(params, skip_if_exists=True)
    finally:
        if lock:
            lock.release()
    return study


def space_params(recipe):
    """The recipe's values of the knobs the space asks for (those ASKED_IF leaves out are not asked)."""
    params = {}
    for name in SPACE:
        if name not in ASKED_IF or ASKED_IF[name](params):
            params[name] = getattr(recipe, name)
    return params


def first_params(base):
    return [space_params(dataclasses.replace(base, **changes)) for changes in FIRST]


def suggest(trial, base):
    """The trial's recipe: `base` with the knobs the sampler picks."""
    params = {}
    for name, (kind, *values) in SPACE.items():
        if name in ASKED_IF and not ASKED_IF[name](params):
            continue
        if kind == "choice":
            params[name] = trial.suggest_categorical(name, values)
        elif kind == "int":
            params[name] = trial.suggest_int(name, *values)
        else:
            params[name] = trial.suggest_float(name, *values, log=kind == "log")
    return dataclasses.replace(base, **params)


def base_recipe(settings):
    """The recipe every trial varies: train.py's default with the study's settings."""
    return train.Recipe(epochs=settings["epochs"], copies=settings["copies"], validation=settings["validation"],
                        precision=settings["precision"])


def trial_recipe(trial, settings):
    """A stored trial's recipe (params holds what the sampler picked; the rest is the default)."""
    return dataclasses.replace(base_recipe(settings), **trial.params)


def study_settings(study):
    """The settings of the study's first finished trial: those every later trial must train with; None if none."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if "settings" in t.user_attrs:
            return t
    return None


def check_settings(study, settings, args, machine, precision_why):
    """Scores compare only trials trained alike: once a trial has finished, its search space, seeds, copies,
    epochs, held-out images and precision are the study's, and a worker that would train otherwise is refused.
    Checked when a worker joins, and again before a trial's score is stored (workers may start together)."""
    first = study_settings(study)
    if first is None:
        return
    stored = first.user_attrs["settings"]
    name = f"study '{args.study_name}' in {where(args)}"
    if stored["space"] != settings["space"]:
        raise Fail(f"{name} was made with another search space: pass a new --study-name (or another --storage)")
    if stored["precision"] != settings["precision"]:
        raise Fail(f"{name} trains in {stored['precision']} (trial {first.number}, on "
                   f"{first.user_attrs.get('machine', '?')}); here, on {machine}, --precision {args.precision} is "
                   f"{settings['precision']} ({precision_why}): pass --precision {stored['precision']} explicitly to "
                   "train this study's trials, or use another --study-name")
    flag = lambda v: ",".join(map(str, v)) if isinstance(v, list) else str(v)
    for key in SETTINGS:
        if stored[key] != settings[key]:
            raise Fail(f"{name} trains its trials with --{key} {flag(stored[key])}, not {flag(settings[key])}: "
                       f"pass --{key} {flag(stored[key])} to continue it, or a new --study-name")


def objective(trial, study, base, settings, args, device, data, precision_why):
    """Train the trial's recipe on every seed (held-out images as the test set); returns its score, or NaN
    (Optuna's failed trial) when a run fails, e.g. its loss diverged: the study goes on."""
    machine = device_name(device)
    trial.set_user_attr("worker", this_worker())
    trial.set_user_attr("machine", machine)
    trial.set_user_attr("settings", settings)
    recipe = suggest(trial, base)
    finals = {}
    for i, seed in enumerate(args.seeds):
        def report(record, run, step0=i * args.epochs):
            trial.report(record["test_acc"], step0 + record["epoch"])

        try:
            metrics = train.train_run(recipe, seed, data, device, log=False, on_epoch=report,
                                      precision_why=precision_why)
        except Fail as e:
            trial.set_user_attr("error", str(e))
            return float("nan")
        out = rundir.prepare_out_dir(args.out_dir / "trials" / f"{trial.number:04d}" / f"seed_{seed}")
        rundir.write_atomic(out / "metrics.json", lambda tmp: tmp.write_text(json.dumps(metrics, indent=1)))
        for run in seed_runs(metrics):
            finals[str(seed) if run["copy"] is None else f"{seed}.{run['copy']}"] = run["test_acc"][-1]
        trial.set_user_attr("finals", finals)
        # ask the pruner only at a seed's end (earlier epochs compare schedules, not recipes), and not after
        # the last one: a trial trained on every seed has earned its score
        if i < len(args.seeds) - 1 and trial.should_prune():
            raise optuna.TrialPruned()
    check_settings(study, settings, args, machine, precision_why)
    return score(list(finals.values()))


def this_worker():
    """What a trial records of the process that runs it, for ended_here(): the pid's start time tells this process
    from a later one that the system gives the same pid."""
    return {"host": socket.gethostname(), "pid": os.getpid(), "started": process_start(os.getpid())}


def process_start(pid):
    """When process `pid` started, in clock ticks since boot (/proc/PID/stat's 22nd field); None where there is no
    such process, or it has ended and waits for its parent to collect it (a zombie), or there is no /proc (not
    Linux)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    state, *fields = stat[stat.rindex(")") + 2:].split()  # after the command's name, which may hold spaces
    return None if state == "Z" else int(fields[18])


def ended_here(worker):
    """Whether `worker` (a trial's this_worker()) was a process of this host that has ended: its pid is free, or
    another process's. Other hosts' processes cannot be seen from here, nor can one whose start time is unknown
    (not Linux), and older studies recorded the worker as 'host:pid' text: all those count as running."""
    return isinstance(worker, dict) and worker["host"] == socket.gethostname() and worker["started"] is not None \
        and process_start(worker["pid"]) != worker["started"]


def retry_trials_of_killed_workers(study, finished_trial=None):
    """Fail the running trials whose worker on this host ended without finishing them (SIGKILL, the OOM killer: no
    code of theirs ran to fail them) and queue their recipes again, so that the study scores every recipe it
    started. For the journal file, whose storage has no heartbeat; called as a worker starts and, as an Optuna
    callback, after each trial, before the worker asks for its next."""
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if ended_here(trial.user_attrs.get("worker")) and failed_here(study, trial):
            again = ", its recipe queued again" if queue_again(study, trial) else f", retried {RETRIES} times already"
            print(f"trial {trial.number}: its worker (pid {trial.user_attrs['worker']['pid']}) ended without "
                  f"finishing it: failed{again}", flush=True)


def failed_here(study, trial):
    """Mark a running trial failed; False where another worker did first (that one queues it again)."""
    try:
        study.tell(trial.number, state=TrialState.FAIL)
    # ValueError: the trial was finished when tell looked; UpdateFinishedTrialError: by the time it wrote
    except (ValueError, optuna.exceptions.UpdateFinishedTrialError):
        return False
    return True


def queue_again(study, trial):
    """Queue a failed trial's recipe again, RETRIES times at most, noting the trials it retries the way RDB
    storages' RetryHeartbeatStaleTrialCallback does (in user attrs: enqueue_trial sets no system attrs)."""
    history = [*retry_history(trial), trial.number]
    if len(history) > RETRIES:
        return False
    study.enqueue_trial(trial.params, user_attrs={"failed_trial": history[0], "retry_history": history})
    return True


def retry_history(trial):
    """The trials whose recipe `trial` runs again, the first one first: noted in user attrs by queue_again, in
    system attrs by RetryHeartbeatStaleTrialCallback."""
    return trial.user_attrs.get("retry_history", []) + trial.system_attrs.get("retry_history", [])


class Progress:
    """An Optuna callback: a line per trial this command finished."""

    def __init__(self, total):
        self.total, self.start, self.done = total, time.time(), 0

    def __call__(self, study, trial):
        self.done += 1
        elapsed = time.time() - self.start
        left = elapsed / self.done * max(self.total - self.done, 0)
        finals = " ".join(f"{v:.2f}" for v in trial.user_attrs.get("finals", {}).values())
        if trial.state == TrialState.COMPLETE:
            value = f"score {trial.value:.3f}"
        else:  # a pruned trial's value is its last accuracy, not a score
            error = trial.user_attrs.get("error")
            value = trial.state.name.lower() + (f" ({error})" if error else "")
        print(f"trial {trial.number} ({self.done} of {self.total} here): {value}  seeds {finals}  "
              f"{' '.join(train_flags(trial.params))}  [{elapsed / 60:.1f} min, ~{left / 60:.1f} min left]",
              flush=True)


def run_study(args):
    device = train.pick_device(args.device)
    precision, why = train.pick_precision(args.precision, device)
    settings = {"space": json.loads(json.dumps(SPACE)),  # as stored: tuples become lists
                **{key: getattr(args, key) for key in SETTINGS}, "precision": precision}
    base = base_recipe(settings)  # the recipe's own range checks: --epochs 0, --copies 0 are one line here
    data = mnist.hold_out(mnist.load_mnist(args.data_dir, device), args.validation)
    study = open_study(args, base)
    check_settings(study, settings, args, device_name(device), why)
    started = sum(t.state.is_finished() for t in study.get_trials(deepcopy=False))
    print(f"study '{args.study_name}' in {where(args)}: {started} trials so far; adding {args.trials}, seeds "
          f"{args.seeds}{copies_note(args.copies)}, {args.epochs} epochs, precision {precision} ({why})", flush=True)
    callbacks = [Progress(args.trials)]
    if args.storage is None:  # RDB storages notice killed workers by their heartbeat, other machines' ones too
        retry_trials_of_killed_workers(study)
        callbacks.append(retry_trials_of_killed_workers)
    study.optimize(lambda t: objective(t, study, base, settings, args, device, data, why), n_trials=args.trials,
                   callbacks=callbacks)
    return study


# ---------------------------------------------------------------------------------------------
# report

def train_flags(params):
    """Changed knobs as train.py flags: {'lr': 0.03, 'bn_decay': False} -> ['--lr', '0.03', '--no-bn-decay']."""
    flags = []
    for name, value in params.items():
        flag = "--" + name.replace("_", "-")
        flags += [flag if value else "--no-" + flag[2:]] if isinstance(value, bool) else [flag, str(value)]
    return flags


def train_command(recipe):
    """`python train.py ...` with the flags of the knobs where `recipe` differs from train.py's default."""
    default = dataclasses.asdict(train.Recipe())
    default["average_epochs"] = train.Recipe(epochs=recipe.epochs, step_size=recipe.step_size).average_epochs
    changed = {name: value for name, value in dataclasses.asdict(recipe).items() if value != default[name]}
    return shlex.join(["python", "train.py", *train_flags(changed)])


def trial_rows(study):
    """Finished trials as dicts, best score first (pruned and failed ones last)."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        if not t.state.is_finished():
            continue
        finals = list(t.user_attrs.get("finals", {}).values())
        rows.append({"trial": t, "number": t.number, "state": t.state.name.lower(), "params": t.params,
                     "finals": finals, "mean": statistics.mean(finals) if finals else None,
                     "min": min(finals) if finals else None,
                     "score": t.value if t.state == TrialState.COMPLETE else None})  # a pruned one's: an accuracy
    return sorted(rows, key=lambda r: (r["score"] is None, -(r["score"] or 0), -(r["mean"] or 0)))


def confirm_recipe(trial, settings):
    """What --confirm trains and users run: the trial's recipe on all training images, one network."""
    return dataclasses.replace(trial_recipe(trial, settings), validation=0, copies=1)


def write_report(study, args):
    rows = trial_rows(study)
    first = study_settings(study)
    settings = first.user_attrs["settings"] if first else None
    changed = [n for n in SPACE if len({repr(r["params"].get(n)) for r in rows}) > 1]  # columns worth showing
    lines = [f"# Study '{args.study_name}'", ""]
    if settings:
        lines += [f"{len(rows)} finished trials; each trains with seeds {', '.join(map(str, settings['seeds']))}"
                  f"{copies_note(settings['copies'])}, {settings['epochs']} epochs, precision "
                  f"{settings['precision']}, on the training images less {settings['validation']:,} held out, and "
                  f"is scored on those held-out images (never the test set). Score: {SCORE} of the seeds' final "
                  "validation accuracies.", ""]
    complete = [r for r in rows if r["state"] == "complete"]
    if complete:
        lines += ["Best recipe:", "", "```bash", train_command(confirm_recipe(complete[0]["trial"], settings)),
                  "```", ""]
    lines += ["| trial | state | score | mean % | min % | seeds' final % | " + " | ".join(changed) + " |",
              "|" + " --- |" * (6 + len(changed))]
    number = lambda v, digits=3: "" if v is None else f"{v:.{digits}f}"
    param = lambda v: f"{v:.4g}" if isinstance(v, float) else str(v)
    failed = [r for r in rows if r["state"] == "fail"]  # listed as a count: they have no results to show
    queued_again = {n for t in study.get_trials(deepcopy=False) for n in retry_history(t)}
    for r in rows:
        if r["state"] != "fail":
            lines.append(f"| {r['number']} | {r['state']} | {number(r['score'])} | {number(r['mean'])} | "
                         f"{number(r['min'], 2)} | {' '.join(f'{v:.2f}' for v in r['finals'])} | "
                         + " | ".join(param(r["params"].get(n, "")) for n in changed) + " |")
    if failed:
        first_failed = min(failed, key=lambda r: r["number"])
        error = first_failed["trial"].user_attrs.get("error", "interrupted")
        again = sum(r["number"] in queued_again for r in failed)
        lines += ["", f"{len(failed)} failed trial(s) not listed{f' ({again} queued again)' if again else ''}; "
                      f"the first: trial {first_failed['number']}, {error}"]
    md = args.out_dir / "sweep.md"
    rundir.write_atomic(md, lambda tmp: tmp.write_text("\n".join(lines) + "\n"))
    if complete:
        plot_study(study, rows, args.out_dir)
    return md


def copies_note(copies):
    return f" ({copies} copies of the network per seed, side by side: train.py --copies {copies})" if copies > 1 else ""


def plot_study(study, rows, out_dir):
    """sweep.png: Optuna's optimization history (each trial's score, the best so far); sweep_seeds.png: the
    per-seed finals of the 10 best trials, the spread that the score punishes."""
    plt = plots.pyplot()
    ax = optuna.visualization.matplotlib.plot_optimization_history(study, target_name=f"score ({SCORE}), %")
    plots.save_figure(ax.figure, "recipe study", out_dir / "sweep.png")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    top = [r for r in rows if r["score"] is not None][:10]
    for k, r in enumerate(top):
        ax.scatter([k] * len(r["finals"]), r["finals"], s=14, color="C0")
        ax.scatter([k], [r["mean"]], marker="_", s=300, color="C1")
    ax.set_xticks(range(len(top)), [str(r["number"]) for r in top])
    ax.set_xlabel("trial (best first)"), ax.set_ylabel("final validation accuracy per seed, %"), ax.grid(alpha=0.3)
    plots.save_figure(fig, "the best trials' seeds", out_dir / "sweep_seeds.png")


def confirm(study, args):
    """Retrain the best --confirm recipes on all training images and report test accuracy on --seeds, each as a
    train.py --seeds run would (seeds.json a runs/1 record)."""
    device = train.pick_device(args.device)
    data = mnist.load_mnist(args.data_dir, device)
    for r in [r for r in trial_rows(study) if r["state"] == "complete"][:args.confirm]:
        recipe = confirm_recipe(r["trial"], r["trial"].user_attrs["settings"])
        _, why = train.pick_precision(recipe.precision, device)  # the study's precision, as the trials trained
        out_dir = args.out_dir / "confirm" / f"trial_{r['number']:04d}"
        argv = [*shlex.split(train_command(recipe))[2:], "--seeds", ",".join(map(str, args.seeds)),
                "--data-dir", args.data_dir, "--out-dir", str(out_dir)]
        print(f"confirming trial {r['number']} on the test set: {shlex.join(['python', 'train.py', *argv])}",
              flush=True)
        train.train_seeds(recipe, args.seeds, data, device, out_dir, argv, precision_why=why)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    return exit_status(lambda: sweep(argv), lambda e: print(
        "\ninterrupted: finished trials are in the study; run the same command to continue it", file=sys.stderr))


def sweep(argv):
    args = parse_args(argv)
    rundir.prepare_out_dir(args.out_dir)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # trials show in the progress lines
    study = load_study(args) if args.report or args.confirm else run_study(args)
    if args.confirm:
        confirm(study, args)
    print(f"report: {write_report(study, args)}")


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, train.stop_on_sigterm)  # as Ctrl-C: Optuna marks the running trial failed
    sys.exit(main())
