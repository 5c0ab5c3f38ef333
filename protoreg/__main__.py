"""``python -m protoreg``: the same as the ``protoreg`` command."""

from protoreg.cli import main

main()
