"""``python -m modelbus.cli``: the same as the ``modelbus`` command."""

from modelbus.cli.main import app

app()
