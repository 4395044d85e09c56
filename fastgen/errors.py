"""The one exception type fastgen raises for bad input.

Every check of user-supplied shapes, kernels, schedules, recipes, files … raises ``FastgenError`` with a
message that names the problem; the CLI turns it into a one-line error instead of a traceback.
"""


def one_line(text: str) -> str:
    """``text`` with its line breaks escaped: names taken from input (recipe keys, paths) may hold them."""
    return text.replace("\r", "\\r").replace("\n", "\\n")


class FastgenError(ValueError):
    """Bad input to fastgen: the message says what is wrong and, where it can, what to do, in one line."""

    def __init__(self, message: str) -> None:
        super().__init__(one_line(str(message)))
