"""The one exception type fastgen raises for bad input.

Every check of user-supplied shapes, kernels, schedules, recipes, files … raises ``FastgenError`` with a
message that names the problem; the CLI turns it into a one-line error instead of a traceback.
"""


class FastgenError(ValueError):
    """Bad input to fastgen: the message says what is wrong and, where it can, what to do."""
