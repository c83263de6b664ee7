"""The one input error every reader raises and every app and CLI catches.

A user who hands maskworks a bad file should read one message that names the file, says what is
wrong with it and how to fix it, whether they used a tab, the command line or Python. Readers raise
:class:`InputError`; apps show ``problem`` and ``fix`` beside the file's name; the CLI prints
``str(error)`` and exits with status 2.
"""
from __future__ import annotations

from pathlib import Path


class InputError(ValueError):
    """A file (or array, folder, setting) cannot be used.

    ``source`` names what was read (a path or a description such as ``"<array>"``), ``problem`` says
    what is wrong, ``fix`` how to make it usable. A ``ValueError``, so code that caught the old
    per-domain errors (or ``ValueError``) keeps working.
    """

    def __init__(self, source: object, problem: str, fix: str = "") -> None:
        self.source = str(source)
        self.problem = problem
        self.fix = fix
        super().__init__(f"{self.source}: {problem}" + (f". Fix: {fix}" if fix else ""))

    @property
    def path(self) -> Path:
        """``source`` as a path (for messages that show only the file's name)."""
        return Path(self.source)

    def short(self) -> str:
        """The message with only the file's name, not its folder (apps show no server paths)."""
        return f"{self.path.name or self.source}: {self.problem}" + (f". Fix: {self.fix}" if self.fix else "")
