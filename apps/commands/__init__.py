"""The command line's entries, one module per domain: argparse over the domains' job modules.

Domains are libraries (no argparse, no printing); everything a person types or reads on a terminal
lives here. Each function takes ``argv`` and returns an exit status (2 for bad input).
"""
