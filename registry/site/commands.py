"""The ``protoreg site`` command: the registry browser written as static files.

Parses its options, calls :func:`protoreg.registry.site.data.site_data` and
:func:`protoreg.registry.site.pages.render_site`, writes the files and names them. ``registry/cli.py``
adds it to the ``protoreg`` group.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import click

from ..errors import UsageError


@click.command()
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Directory to write the site to (new, empty, or a previous `protoreg site` output).")
@click.option("--server-url", metavar="URL",
              help="Base URL of a protoreg HTTP endpoint for the try-it forms to post to "
              "(default: the forms build requests but cannot send them).")
@click.pass_context
def site(ctx: click.Context, out_dir: Path, server_url: str | None) -> None:
    """Write the registry browser as static files: models, releases, field ledgers, diffs, protos.

    Read-only and needs no server: open DIR/index.html in a browser, or publish DIR anywhere
    (every link is relative). The same registry always gives the same bytes. DIR/site.json
    holds the data the pages show.
    """
    from ..commands import open_from
    from .data import site_data
    from .pages import render_site, write_site

    if server_url is not None:
        parts = urlsplit(server_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(f'--server-url wants an http(s) URL such as http://127.0.0.1:8080, not "{server_url}"')
    with open_from(ctx) as registry:
        data = site_data(registry)
    files = render_site(data, try_it_base=server_url)
    changed = write_site(out_dir, files)
    pages = sum(1 for path in files if path.endswith(".html"))
    models = len(data["models"])
    state = f"{len(changed)} files written or removed" if changed else "up to date"
    click.echo(f"{out_dir}: {models} model{'' if models == 1 else 's'}, {pages} pages, {len(files)} files ({state})")
