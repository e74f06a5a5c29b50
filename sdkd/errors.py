"""The one exception type that the command line turns into a clean message."""


class SdkdError(Exception):
    """Bad input or an impossible setting.

    The message names the file or config key at fault and what was expected; the
    command line prints it on one line and exits non-zero, without a traceback.
    """


def os_error_message(exc: OSError) -> str:
    """One line for an operating-system error: the path(s) it names and what went wrong,
    e.g. ``results/x.h5: No space left on device``."""
    what = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{' → '.join(paths)}: {what}" if paths else what
