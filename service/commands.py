"""The ``protoreg serve`` and ``protoreg predict`` commands (added to the ``main`` group).

``serve`` runs in the foreground until SIGTERM or SIGINT, then reports NOT_SERVING, stops taking
calls, lets in-flight calls finish within ``--grace`` seconds and exits 0, whatever a model call
still running does. SIGHUP reloads proto_versions/ and the models and re-reads the bearer token.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from protoreg.registry.errors import ProtoregError, UsageError

from .batching import DEFAULT_MAX_BATCH_DELAY, DEFAULT_MAX_BATCH_SIZE, DEFAULT_PREDICT_TIMEOUT
from .capacity import DEFAULT_ADDRESS, DEFAULT_MAX_MESSAGE_BYTES, DEFAULT_MAX_STREAMS, DEFAULT_WORKERS, LOG_FORMATS

if TYPE_CHECKING:
    from .server import ModelServer, ServeOptions
    from .telemetry import Telemetry

TLS_PATH = click.Path(exists=True, dir_okay=False, path_type=Path)
# not exists=True: protoreg.service.auth.read_token says what is wrong with the file and how to fix it
TOKEN_PATH = click.Path(dir_okay=False, path_type=Path)


@click.command()
@click.argument("model_refs", nargs=-1, metavar="MODEL_REF...")
@click.option("--all", "all_models", is_flag=True, help="Serve every entry-point model.")
@click.option("--address", default=DEFAULT_ADDRESS, show_default=True, metavar="HOST:PORT",
              help="Where to listen: a port from 1 to 65535, or 0 for any free port (printed).")
@click.option("--tls-cert", type=TLS_PATH, help="Server certificate chain (PEM); enables TLS.")
@click.option("--tls-key", type=TLS_PATH, help="Server private key (PEM).")
@click.option("--tls-client-ca", type=TLS_PATH,
              help="CA (PEM) that client certificates must chain to; enables mutual TLS.")
@click.option("--max-message-bytes", type=click.IntRange(min=1), default=DEFAULT_MAX_MESSAGE_BYTES,
              show_default=True, help="Largest request or response; bigger is RESOURCE_EXHAUSTED.")
@click.option("--grace", type=click.FloatRange(min=0), default=10.0, show_default=True,
              metavar="SECONDS", help="How long in-flight calls may run on after SIGTERM/SIGINT.")
@click.option("--workers", type=click.IntRange(min=1), default=DEFAULT_WORKERS, show_default=True,
              help="Model threads of each model without predict_batch (a batch-aware model has one).")
@click.option("--max-streams", type=click.IntRange(min=1), default=DEFAULT_MAX_STREAMS, show_default=True,
              help="Open streams at once (PredictStream, reflection, health Watch; Watch at most an eighth); "
                   "one more is RESOURCE_EXHAUSTED.")
@click.option("--auth-token-file", type=TOKEN_PATH, metavar="PATH",
              help="A file holding one bearer token; every call but health must send "
                   "`authorization: Bearer <token>` or is UNAUTHENTICATED. Re-read when it changes and on SIGHUP.")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=DEFAULT_MAX_BATCH_SIZE, show_default=True,
              help="Most inputs one predict_batch call gets.")
@click.option("--max-batch-delay", type=click.FloatRange(min=0), default=DEFAULT_MAX_BATCH_DELAY,
              show_default=True, metavar="SECONDS",
              help="Longest a batch waits for the calls that recent traffic says are coming (0: never wait).")
@click.option("--predict-timeout", type=click.FloatRange(min=0, min_open=True), default=DEFAULT_PREDICT_TIMEOUT,
              show_default=True, metavar="SECONDS",
              help="A model call running longer stalls its model: waiting calls get DEADLINE_EXCEEDED, new "
                   "ones UNAVAILABLE, health NOT_SERVING, until it returns.")
@click.option("--processes", type=click.IntRange(min=1), default=1, show_default=True,
              help="Server processes sharing the port (SO_REUSEPORT), each with its own copy of the models.")
@click.option("--cpu-affinity", default="auto", show_default=True, metavar="auto|none|CPU,...",
              help="Pin each server process to one CPU (auto: process i to the i-th usable CPU).")
@click.option("--metrics-address", metavar="HOST:PORT",
              help="Serve Prometheus metrics at http://HOST:PORT/metrics (off by default).")
@click.option("--log-format", type=click.Choice(LOG_FORMATS), default="text", show_default=True,
              help="Log lines as text or as one JSON object per line.")
@click.option("--access-log/--no-access-log", default=True, show_default=True,
              help="One log line per call: method, model, version, code, duration, peer, request id, trace id.")
@click.option("--reload-interval", type=click.FloatRange(min=0), default=0.0, show_default=True, metavar="SECONDS",
              help="Reload proto_versions/ and the models this often (0: only on SIGHUP).")
@click.option("--http-address", metavar="HOST:PORT",
              help="Also answer JSON over HTTP (Connect's unary protocol: POST /<package>.<Service>/<Method>), "
                   "/healthz, /readyz and the registry browser at / (off by default).")
@click.option("--site", "site_dir", type=click.Path(file_okay=False, path_type=Path), metavar="DIR",
              help="Serve the registry browser written by `protoreg site --out DIR` at / of --http-address, "
                   "with the served releases marked and the try-it forms calling this server.")
@click.option("--bind", "bindings", multiple=True, metavar="/PKG.SERVICE/METHOD=MODULE:FUNCTION",
              help="Answer another method of an adopted API's service (e.g. a get_models) with FUNCTION(models, "
                   "request), which returns the response message or its JSON as a dict; repeatable. Methods "
                   "neither served nor bound answer UNIMPLEMENTED and are listed at start-up.")
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
    max_streams: int,
    auth_token_file: Path | None,
    max_batch_size: int,
    max_batch_delay: float,
    predict_timeout: float,
    processes: int,
    cpu_affinity: str,
    metrics_address: str | None,
    log_format: str,
    access_log: bool,
    reload_interval: float,
    http_address: str | None,
    site_dir: Path | None,
    bindings: tuple[str, ...],
) -> None:
    """Serve models over gRPC (and JSON over HTTP) from the releases rendered in --protos.

    Each model is served from the package of its major version, with health checking, server
    reflection and the protoreg registry service; --http-address adds the same unary methods as
    JSON over HTTP (Connect's protocol), health endpoints and the registry browser. A model whose
    installed version or schema is not the rendered release is refused. Concurrent calls of a
    model that defines predict_batch are answered together, in batches. SIGHUP (or
    --reload-interval) serves what proto_versions/ and the installed models say then, without a
    restart, and re-reads the bearer token. A line adopted with `protoreg adopt --rpc` is also
    served at its legacy method path.
    """
    from .address import parse_address
    from .affinity import parse_cpu_affinity
    from .auth import TokenSource
    from .batching import BatchPolicy
    from .server import ServeOptions
    from .telemetry import configure_logging
    from .tls import server_credentials

    refs = list(model_refs)
    if not refs and not all_models:
        raise UsageError("name at least one MODEL_REF (module:Class or an entry-point name), or pass --all")
    configure_logging(log_format)
    tokens = TokenSource.from_file(auth_token_file) if auth_token_file is not None else None
    parse_address(address)
    metrics = parse_address(metrics_address, "--metrics-address") if metrics_address else None
    if http_address is not None:
        parse_address(http_address, "--http-address")
    if site_dir is not None:
        if http_address is None:
            raise UsageError("--site needs --http-address HOST:PORT: the pages are served there")
        from protoreg.registry.site.pages import load_site_data

        load_site_data(site_dir)  # a missing or foreign site.json stops serve now, in one sentence
    server_credentials(tls_cert, tls_key, tls_client_ca)  # every TLS file checked before anything starts
    from .legacy import parse_binding

    bound = tuple(parse_binding(text) for text in bindings)
    options = ServeOptions(
        address=address,
        max_message_bytes=max_message_bytes,
        tls_cert=tls_cert,
        tls_key=tls_key,
        tls_client_ca=tls_client_ca,
        workers=workers,
        max_streams=max_streams,
        auth_token=tokens,
        batch=BatchPolicy(max_batch_size=max_batch_size, max_batch_delay=max_batch_delay,
                          predict_timeout=predict_timeout),
        reload_interval=reload_interval,
        drain=grace,
        http_address=http_address,
        site=site_dir,
        bindings=bound,
    )
    run = RunOptions(refs, all_models, ctx.obj["protos_dir"], grace, access_log, log_format, metrics,
                     parse_cpu_affinity(cpu_affinity))
    if processes > 1:
        from .supervisor import serve_processes

        serve_processes(run, options, processes)
        return
    run_server(run, options)


class ServeError(ProtoregError):
    """``protoreg serve`` could not start something besides the gRPC server."""


@dataclass(frozen=True)
class RunOptions:
    """What ``protoreg serve`` needs beyond the server's own options."""

    refs: list[str]
    all_models: bool
    protos: Path
    grace: float
    access_log: bool
    log_format: str
    metrics: tuple[str, int] | None  # where to serve /metrics (None: nowhere)
    cpu_affinity: list[int] | str = "none"  # service/affinity.py


def build_telemetry(run: RunOptions, metrics: bool) -> Telemetry:
    """The telemetry of one server process; tracing when OTEL_* asks for it and the extra is there."""
    from .telemetry import AccessLog, Metrics, Telemetry, Tracing, tracing_requested

    tracing = None
    if tracing_requested():
        try:
            tracing = Tracing()
        except ImportError:
            logging.getLogger("protoreg.service").warning(
                "OTEL_* settings ask for traces but the OpenTelemetry packages are not installed; "
                "pip install 'protoreg[otel]'")
    access = AccessLog(run.log_format) if run.access_log else False
    return Telemetry(access_log=access, metrics=Metrics() if metrics else None, tracing=tracing)


def start_metrics_endpoint(address: tuple[str, int], registry: Any = None) -> None:
    """Serve ``/metrics`` in a thread of its own; a busy port is one sentence."""
    from prometheus_client import REGISTRY, start_http_server

    host, port = address
    try:
        start_http_server(port, addr=host.strip("[]"), registry=REGISTRY if registry is None else registry)
    except OSError as error:
        raise ServeError(f"cannot serve metrics on {host}:{port} ({error.strerror or error}); choose another "
                         "--metrics-address") from error


def run_server(run: RunOptions, options: ServeOptions,
               on_ready: Callable[[ModelServer, int], None] | None = None, serve_metrics: bool = True,
               index: int = 0) -> None:
    """Serve in the foreground until SIGTERM or SIGINT, then drain and exit the process.

    ``on_ready`` (used by ``--processes``) is called with the server and its port once it listens,
    and reports SERVING itself (the server starts NOT_SERVING then); a worker records metrics but
    leaves ``/metrics`` to its parent (``serve_metrics=False``). The process exits with
    ``os._exit`` once the server has stopped: a model call that ignored the cancellation at the end
    of ``--grace`` must not keep it alive.
    """
    from dataclasses import replace

    from .affinity import pin
    from .server import ReloadError, serve_refs

    telemetry = build_telemetry(run, run.metrics is not None)
    if run.metrics is not None and serve_metrics:
        start_metrics_endpoint(run.metrics)
    server = serve_refs(run.refs, run.protos, replace(options, telemetry=telemetry), run.all_models)
    stop = threading.Event()
    tokens = server.tokens
    grace = run.grace

    def reload() -> None:
        if tokens is not None:
            tokens.reload()
        try:
            server.reload()
        except ReloadError as error:
            logging.getLogger("protoreg.service").error("reload failed, still serving what was served: %s", error)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        if signum == signal.SIGHUP:
            threading.Thread(target=reload, name="protoreg-reload", daemon=True).start()
            return
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    pin(run.cpu_affinity, index)  # only now: a serve that failed to start must not pin its caller
    try:
        port = server.start(serving=on_ready is None)
        host = options.address.rsplit(":", 1)[0]
        if on_ready is not None:
            on_ready(server, port)
        else:
            for model in server.models:
                click.echo(f"serving {model.name} {model.version} as {model.service_name}")
            for path, service in server.legacy.served.items():
                click.echo(f"serving {path} (legacy) with {service}/Predict")
            for path in server.legacy.bound:
                click.echo(f"serving {path} (legacy) with --bind {dict(options.bindings)[path]}")
            for path in server.legacy.unbound:
                click.echo(f"not bound: {path} answers UNIMPLEMENTED (bind it with --bind {path}=module:function)")
            if server.http is not None:
                click.echo(f"http on {server.http.url}{' (registry browser at /)' if options.site else ''}")
            click.echo(f"listening on {host}:{port}{' (TLS)' if options.tls_cert else ''}", nl=True)
        while not stop.wait(0.2):
            pass
        click.echo(f"shutting down: finishing in-flight calls (up to {grace:g}s)")
        # whatever happens below, the process is gone soon after the grace
        watchdog = threading.Timer(grace + EXIT_MARGIN, _force_exit, args=(grace,))
        watchdog.daemon = True
        watchdog.start()
        server.stop(grace)
        for line in server.batch_summary():
            logging.getLogger("protoreg.service").info("served %s", line)
        click.echo("stopped")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _exit(0)


EXIT_MARGIN = 5.0  # seconds after --grace at which a stuck shutdown is cut short


def _force_exit(grace: float) -> None:
    logging.getLogger("protoreg.service").error(
        "shutdown did not finish within --grace %g s plus %g s; exiting now", grace, EXIT_MARGIN)
    _exit(0)


def _exit(code: int) -> None:
    """Leave now: threads still inside a model call must not hold the process open."""
    sys.stdout.flush()
    sys.stderr.flush()
    logging.shutdown()
    os._exit(code)


@click.command()
@click.argument("model")
@click.option("--json", "payload", required=True, metavar="JSON", help="The request as proto JSON.")
@click.option("--address", default=DEFAULT_ADDRESS, show_default=True, metavar="HOST:PORT",
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
