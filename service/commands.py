"""The ``protoreg serve`` and ``protoreg predict`` commands (added to the ``main`` group).

``serve`` runs in the foreground until SIGTERM or SIGINT, then reports NOT_SERVING, stops taking
calls, lets in-flight calls finish within ``--grace`` seconds and exits 0.
"""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path
from types import FrameType

import click

from protoreg.registry.errors import UsageError

TLS_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)
# not exists=True: protoreg.service.auth.read_token says what is wrong with the file and how to fix it
TOKEN_PATH = click.Path(dir_okay=False, path_type=Path)


@click.command()
@click.argument("model_refs", nargs=-1, metavar="MODEL_REF...")
@click.option("--all", "all_models", is_flag=True, help="Serve every entry-point model.")
@click.option("--address", default="127.0.0.1:50051", show_default=True, metavar="HOST:PORT",
              help="Where to listen (port 0 picks a free port).")
@click.option("--tls-cert", type=TLS_PATH, help="Server certificate chain (PEM); enables TLS.")
@click.option("--tls-key", type=TLS_PATH, help="Server private key (PEM).")
@click.option("--tls-client-ca", type=TLS_PATH,
              help="CA (PEM) that client certificates must chain to; enables mutual TLS.")
@click.option("--max-message-bytes", type=click.IntRange(min=1), default=4 * 1024 * 1024,
              show_default=True, help="Largest request or response; bigger is RESOURCE_EXHAUSTED.")
@click.option("--grace", type=click.FloatRange(min=0), default=10.0, show_default=True,
              metavar="SECONDS", help="How long in-flight calls may run on after SIGTERM/SIGINT.")
@click.option("--workers", type=click.IntRange(min=1), default=16, show_default=True,
              help="Threads answering calls.")
@click.option("--auth-token-file", type=TOKEN_PATH, metavar="PATH",
              help="A file holding one bearer token; every call but health must send "
                   "`authorization: Bearer <token>` or is UNAUTHENTICATED.")
@click.pass_context
def serve(
    ctx: click.Context,
    model_refs: tuple[str, ...],
    all_models: bool,
    address: str,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_client_ca: Path | None,
    max_message_bytes: int,
    grace: float,
    workers: int,
    auth_token_file: Path | None,
) -> None:
    """Serve models over gRPC from the releases rendered in --protos.

    Each model is served from the package of its major version, with health checking, server
    reflection and the protoreg registry service. A model whose installed version or schema is not
    the rendered release is refused.
    """
    from protoreg.registry.loader import entry_point_models

    from .auth import read_token
    from .server import ServeOptions, serve_refs

    refs = list(model_refs)
    if all_models:
        refs += [name for name in sorted(entry_point_models()) if name not in refs]
    if not refs:
        raise UsageError("name at least one MODEL_REF (module:Class or an entry-point name), or pass --all")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    auth_token = read_token(auth_token_file) if auth_token_file is not None else None
    options = ServeOptions(
        address=address,
        max_message_bytes=max_message_bytes,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        workers=workers,
        auth_token=auth_token,
    )
    server = serve_refs(refs, ctx.obj["protos_dir"], options)
    stop = threading.Event()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        port = server.start()
        host = address.rsplit(":", 1)[0]
        for model in server.models:
            click.echo(f"serving {model.name} {model.version} as {model.service_name}")
        click.echo(f"listening on {host}:{port}{' (TLS)' if tls_cert else ''}", nl=True)
        while not stop.wait(0.2):
            pass
        click.echo(f"shutting down: finishing in-flight calls (up to {grace:g}s)")
        server.stop(grace)
        click.echo("stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@click.command()
@click.argument("model")
@click.option("--json", "payload", required=True, metavar="JSON", help="The request as proto JSON.")
@click.option("--address", default="127.0.0.1:50051", show_default=True, metavar="HOST:PORT",
              help="The server to call.")
@click.option("--major", type=click.IntRange(min=0), default=None,
              help="The major line to call (default: the highest served).")
@click.option("--timeout", type=click.FloatRange(min=0, min_open=True), default=30.0, show_default=True,
              metavar="SECONDS", help="Deadline of the call.")
@click.option("--tls-ca", type=TLS_PATH, help="Use TLS, trusting this CA (PEM).")
@click.option("--tls-cert", type=TLS_PATH, help="Client certificate (PEM), for mutual TLS.")
@click.option("--tls-key", type=TLS_PATH, help="Client private key (PEM), for mutual TLS.")
@click.option("--auth-token-file", type=TOKEN_PATH, metavar="PATH",
              help="A file holding the server's bearer token, sent on every call.")
def predict(
    model: str,
    payload: str,
    address: str,
    major: int | None,
    timeout: float,
    tls_ca: Path | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    auth_token_file: Path | None,
) -> None:
    """Call MODEL's Predict on a running server, finding it by reflection; print the answer as JSON.

    Exits 1 with the gRPC status (and any field violations) when the call fails.
    """
    from .auth import read_token
    from .client import ClientTLS, PredictTarget, predict_json

    tls = None
    if tls_ca or tls_cert or tls_key:
        if bool(tls_cert) != bool(tls_key):
            raise UsageError("mutual TLS needs both --tls-cert and --tls-key")
        tls = ClientTLS(tls_ca, tls_cert, tls_key)
    token = read_token(auth_token_file) if auth_token_file is not None else None
    click.echo(predict_json(PredictTarget(address, tls, token=token), model, payload, major, timeout))
