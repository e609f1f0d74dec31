"""The ``modelbus`` command line."""

from modelbus.cli.main import app

__all__ = ["app"]
