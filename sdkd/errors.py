"""The one exception type that the command line turns into a clean message."""


class SdkdError(Exception):
    """Bad input or an impossible setting.

    The message names the file or config key at fault and what was expected; the
    command line prints it on one line and exits non-zero, without a traceback.
    """
