"""The one error type the command line turns into a one-line message and exit code 2."""


class DetectorError(Exception):
    """Bad input from the user: the message names the input and says what to do."""
