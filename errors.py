"""How this project's scripts fail: a problem the user can fix is one line and an exit code, never a traceback."""
import sys


class Fail(Exception):
    """A problem the user can fix: printed as one line naming the cause and the fix, no traceback."""

    def __init__(self, message, code=2):
        super().__init__(message)
        self.code = code


def exit_status(job, on_interrupt):
    """A script's exit status: 0 when job() ends; for a Fail, its one-line message and code; for Ctrl-C or SIGTERM,
    its code (130 or 143, as a shell reports a process those signals killed) after on_interrupt(exception)."""
    try:
        job()
    except Fail as e:
        print(f"error: {e}", file=sys.stderr)
        return e.code
    except KeyboardInterrupt as e:
        on_interrupt(e)
        return getattr(e, "code", 130)
    return 0
