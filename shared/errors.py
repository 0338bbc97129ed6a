"""Errors whose message is the answer a user reads in `dispatch show` and at the end of `--wait`."""


class UserFacingError(Exception):
    """The message names the file, id or tool and says what to do; no traceback is shown."""


class InputError(UserFacingError):
    """Bad input: a file, id or option the user can correct."""


class ToolFailed(UserFacingError):
    """An external tool (nnU-Net's commands) failed; the message quotes its last error line."""
