"""Errors whose message is the answer a user reads in `dispatch show` and at the end of `--wait`."""


class InputError(Exception):
    """Bad input: the message names the file or id and says what to do."""
