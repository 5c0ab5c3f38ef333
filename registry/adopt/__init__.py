"""Adopting an existing API (``protoreg adopt``): a model's first release numbered from a ``.proto``
clients already use.

:mod:`.record` owns what an adoption keeps for the life of the model and how it shapes every later
numbering (implicit presence, the legacy reservations, the legacy RPC path); :mod:`.fit` reads the
existing ``.proto`` files with ``protoc`` and decides whether the model's schema fits them, listing
every mismatch with the line to write; :mod:`.commands` is the command.
"""
