"""The input layer below every domain: the one input error, ``shipped:`` paths and point-cloud files.

Any domain may import from here (domains never import each other), so a format is read in one place
and every app and CLI reports a bad file the same way.
"""
from maskworks.core.io.errors import InputError
from maskworks.core.io.shipped import resolve_shipped

__all__ = ["InputError", "resolve_shipped"]
