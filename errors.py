"""How this project's scripts fail: a problem the user can fix is one line and an exit code, never a traceback."""
import errno
import os
import sys
from pathlib import Path


class Fail(Exception):
    """A problem the user can fix: printed as one line naming the cause and the fix, no traceback."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


def exit_status(job, on_interrupt):
    """A script's exit status: job()'s own (0 when it returns none); for a Fail, its one-line message and code; for
    Ctrl-C or SIGTERM, its code (130 or 143, as a shell reports a process those signals killed) after
    on_interrupt(exception); for a closed output pipe, 141."""
    try:
        return job() or 0
    except Fail as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt as e:
        on_interrupt(e)
        return getattr(e, "code", 130)
    except BrokenPipeError:  # the output's reader is gone (`| head`): stop quietly, as shell tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # what is left to flush at exit goes nowhere
        return 141  # 128 + SIGPIPE, as a shell reports a process that signal ended


OPEN_ERRORS = (FileNotFoundError, IsADirectoryError, PermissionError)  # what cannot_open words


def cannot_open(name, error, fix, folder_fix=None):
    """The Fail for a file that could not be opened for reading (FileNotFoundError, IsADirectoryError or
    PermissionError): `fix` says what to pass instead, `folder_fix` what to do with a folder (default: `fix`)."""
    if isinstance(error, IsADirectoryError):
        return Fail(f"{name} is a folder: {folder_fix or fix}")
    if isinstance(error, PermissionError):
        return Fail(f"{name} cannot be read (permission denied): fix its permissions")
    return Fail(f"{name}: no such file: {fix}")


PERMISSION_ERRORS = (errno.EACCES, errno.EPERM, errno.EROFS)


def in_container():
    """Inside a container? This project's image sets MNIST_TRAINER_IMAGE; Docker creates /.dockerenv, Podman
    /run/.containerenv."""
    markers = ("/.dockerenv", "/run/.containerenv")
    return bool(os.environ.get("MNIST_TRAINER_IMAGE")) or any(map(os.path.exists, markers))


def write_permission_fix(path):
    """How to make `path` (a folder, or where it would be created) writable, for a one-line error. In a container
    the cause is almost always a -v mount that `docker run` created, owned by root, or owned by another uid."""
    existing = Path(os.path.abspath(path))
    while not existing.exists() and existing != existing.parent:  # the folder that would have to be written
        existing = existing.parent
    try:
        owner = f"uid {existing.stat().st_uid}"
    except OSError:
        owner = "another user"
    me = f"uid {os.getuid()}" if hasattr(os, "getuid") else "this user"
    if owner == me:  # not whose it is: its mode, or a read-only file system (a -v mount with :ro)
        return f"{existing} is this process's ({me}) but read-only: make it writable or pass another folder"
    if in_container():
        return (f"{existing} belongs to {owner} and this container runs as {me}: in Docker, create the host folders "
                f"before docker run (mkdir -p data out; docker run creates missing ones owned by root) and run as "
                f"their owner, docker run --user \"$(id -u):$(id -g)\" ... (or make the -v mount's folder writable)")
    return f"{existing} belongs to {owner}, this process runs as {me}: fix its permissions or pass another folder"
