"""The registry browser: a read-only web view of the registry (``protoreg site``).

- :mod:`protoreg.registry.site.data` reads an open registry into one JSON-compatible document, the
  *site data*: models, releases with dates and bumps, each model's field ledger, the ``.proto``
  text of every release, and the checker's findings between releases.
- :mod:`protoreg.registry.site.pages` renders that document into pages (Jinja2 templates in
  ``templates/``, one hand-written script and stylesheet in ``static/``). It needs neither the
  database nor SQLAlchemy, so a server that only has the written ``site.json`` can render the
  same pages, marking what it serves and enabling the try-it forms.
- :mod:`protoreg.registry.site.commands` is the ``protoreg site`` command.

Nothing is imported here, so importing the pages module stays cheap.
"""
