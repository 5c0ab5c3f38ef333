"""``protoreg serve --processes N``: N server processes on one port, kept alive by this one.

Each worker is a whole ``protoreg serve`` (its own models, its own gRPC server) bound to the same
port with ``SO_REUSEPORT``, so the kernel spreads *connections* over the workers. A gRPC channel
is one connection, so one busy client gains nothing; many clients (or a load balancer holding
several connections) do, on a machine with cores to spare.

The parent does no gRPC itself. It reserves the port (with ``SO_REUSEPORT`` too, without
listening, so that ``--address HOST:0`` names one port for all workers and no other program can
take it meanwhile), starts the workers and waits until every one has bound: until then each
worker's health reports ``NOT_SERVING``, and the parent then tells them all to report
``SERVING``. A worker that dies is started again (it serves once it is ready); one that keeps dying
at start-up stops the whole server. SIGTERM or SIGINT is passed on to every worker, which drains
its own calls within ``--grace``; SIGHUP is passed on too.

Workers talk to the parent over two pipes: a line of JSON when bound, and ``serve`` back. A
worker whose parent is gone (its pipe closes) shuts itself down.
"""

from __future__ import annotations

import json
import logging
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from protoreg.registry.errors import ProtoregError

from .address import parse_address
from .commands import RunOptions, run_server, start_metrics_endpoint
from .server import ServeError, ServeOptions

log = logging.getLogger("protoreg.service")

RESTARTS_AT_START_UP = 5  # a worker that dies this many times in a row before it is ready stops all
EXIT_MARGIN = 5.0


@dataclass
class _Worker:
    index: int
    process: subprocess.Popen[bytes]
    status: Any  # the read end of the worker's status pipe (a file object)
    commands: int  # the write end of the worker's command pipe (an fd)
    ready: bool = False
    started: float = field(default_factory=time.monotonic)


def _reserve_port(host: str, port: int, option: str = "--address") -> socket.socket:
    """A bound, not listening, SO_REUSEPORT socket on ``host:port`` (port 0: a free one)."""
    family = socket.AF_INET6 if host.startswith("[") else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host.strip("[]"), port))
    except OSError as error:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port} ({error.strerror or error}); is another server using it? "
            f"choose another with {option} HOST:PORT"
        ) from error
    return sock


def _worker_config(run: RunOptions, options: ServeOptions, address: str, http_address: str | None) -> str:
    tokens = options.auth_token
    token_file = getattr(tokens, "path", None)
    if tokens is not None and token_file is None:
        raise ServeError("--processes needs the bearer token in a file (--auth-token-file)")
    return json.dumps({
        "refs": list(run.refs),
        "all_models": run.all_models,
        "protos": str(run.protos),
        "address": address,
        "grace": run.grace,
        "access_log": run.access_log,
        "log_format": run.log_format,
        "metrics": list(run.metrics) if run.metrics else None,
        "cpu_affinity": run.cpu_affinity,
        "reload_interval": options.reload_interval,
        "max_message_bytes": options.max_message_bytes,
        "tls_cert": str(options.tls_cert) if options.tls_cert else None,
        "tls_key": str(options.tls_key) if options.tls_key else None,
        "tls_client_ca": str(options.tls_client_ca) if options.tls_client_ca else None,
        "workers": options.workers,
        "max_streams": options.max_streams,
        "token_file": str(token_file) if token_file else None,
        "max_batch_size": options.batch.max_batch_size,
        "max_batch_delay": options.batch.max_batch_delay,
        "predict_timeout": options.batch.predict_timeout,
        "http_address": http_address,
        "site": str(options.site) if options.site else None,
    })


def _spawn(index: int, config: str, metrics_dir: str | None) -> _Worker:
    config = json.dumps({**json.loads(config), "index": index})
    status_r, status_w = os.pipe()
    command_r, command_w = os.pipe()
    package = __spec__.parent if __spec__ is not None else "service"
    code = f"from {package}.supervisor import worker_main; worker_main()"
    env = {**os.environ, "PROTOREG_WORKER": f"{status_w},{command_r}"}
    if metrics_dir is not None:
        env["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # prometheus-client's multiprocess mode
    process = subprocess.Popen(
        [sys.executable, "-c", code, config],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, env=env, pass_fds=(status_w, command_r),
    )
    os.close(status_w)
    os.close(command_r)
    return _Worker(index, process, os.fdopen(status_r, "rb", buffering=0), command_w)


def _tell(worker: _Worker, command: str) -> None:
    try:
        os.write(worker.commands, f"{command}\n".encode())
    except OSError:
        pass  # it died; the loop notices


def serve_processes(run: RunOptions, options: ServeOptions, processes: int) -> None:
    """Run ``processes`` workers until SIGTERM or SIGINT; returns once they have all stopped.

    With ``--metrics-address`` the workers write their metrics into a temporary directory
    (prometheus-client's multiprocess mode) and this process serves their sum.
    """
    grace = run.grace
    host, port = parse_address(options.address)
    reservation = _reserve_port(host, port)
    port = reservation.getsockname()[1]
    address = f"{host}:{port}"
    http_address = http_reservation = None
    if options.http_address is not None:  # every worker answers HTTP on one port too
        http_host, http_port = parse_address(options.http_address, "--http-address")
        http_reservation = _reserve_port(http_host, http_port, "--http-address")
        http_address = f"{http_host}:{http_reservation.getsockname()[1]}"
    config = _worker_config(run, options, address, http_address)
    metrics_dir = _metrics_endpoint(run.metrics) if run.metrics is not None else None
    stop = {"signal": 0}

    def on_signal(signum: int, _frame: Any) -> None:
        if signum == signal.SIGHUP:
            for worker in workers:
                if worker.process.poll() is None:
                    worker.process.send_signal(signal.SIGHUP)
            return
        stop["signal"] = signum

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    workers = [_spawn(i, config, metrics_dir) for i in range(processes)]
    failures_in_a_row = 0
    announced = printed = False
    try:
        while not stop["signal"]:
            readable = [w.status for w in workers if not w.ready]
            if readable:
                ready, _, _ = select.select(readable, [], [], 0.2)
            else:
                ready = []
                time.sleep(0.2)
            for worker in workers:
                if worker.status in ready:
                    line = worker.status.readline()
                    if line:
                        report = json.loads(line)
                        worker.ready = True
                        failures_in_a_row = 0
                        if not printed:
                            for served in report["serving"]:
                                click.echo(f"serving {served}")
                            printed = True
                        if announced:
                            _tell(worker, "serve")  # the others serve already
            if not announced and all(w.ready for w in workers):
                for worker in workers:
                    _tell(worker, "serve")
                if http_address is not None:
                    scheme = "https" if options.tls_cert else "http"
                    click.echo(f"http on {scheme}://{http_address}{' (registry browser at /)' if options.site else ''}")
                click.echo(f"listening on {address}{' (TLS)' if options.tls_cert else ''} "
                           f"({processes} processes)")
                announced = True
            for i, worker in enumerate(workers):
                code = worker.process.poll()
                if code is None:
                    continue
                if not worker.ready:
                    failures_in_a_row += 1
                    if failures_in_a_row >= RESTARTS_AT_START_UP:
                        raise ProtoregError(
                            f"server process {worker.index} exited with {code} before it was ready, "
                            f"{failures_in_a_row} times in a row; its log above says why"
                        )
                log.error("server process %d (pid %d) exited with %s; starting it again",
                          worker.index, worker.process.pid, code)
                _close(worker)
                if metrics_dir is not None:
                    from prometheus_client import multiprocess

                    multiprocess.mark_process_dead(worker.process.pid, metrics_dir)
                workers[i] = _spawn(worker.index, config, metrics_dir)
        click.echo(f"shutting down: finishing in-flight calls (up to {grace:g}s)")
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        _stop_all(workers, grace)
        reservation.close()
        if http_reservation is not None:
            http_reservation.close()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)
    click.echo("stopped")


def _metrics_endpoint(address: tuple[str, int]) -> str:
    """A fresh directory for the workers' metrics, and ``/metrics`` serving their sum."""
    from prometheus_client import CollectorRegistry, multiprocess

    directory = tempfile.mkdtemp(prefix="protoreg-metrics-")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=directory)
    start_metrics_endpoint(address, registry)
    return directory


def _close(worker: _Worker) -> None:
    worker.status.close()
    try:
        os.close(worker.commands)
    except OSError:
        pass


def _stop_all(workers: list[_Worker], grace: float) -> None:
    for worker in workers:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace + EXIT_MARGIN
    for worker in workers:
        try:
            worker.process.wait(max(deadline - time.monotonic(), 0.0))
        except subprocess.TimeoutExpired:
            log.error("server process %d did not stop in time; killing it", worker.index)
            worker.process.kill()
            worker.process.wait()
        _close(worker)


# -- the worker side ------------------------------------------------------------------------


def worker_main() -> None:
    """Entry point of one worker process (started by :func:`serve_processes`)."""
    import threading

    from .auth import TokenSource
    from .batching import BatchPolicy
    from .telemetry import configure_logging

    status_fd, command_fd = (int(fd) for fd in os.environ.pop("PROTOREG_WORKER").split(","))
    config = json.loads(sys.argv[1])
    configure_logging(config["log_format"])

    def path(key: str) -> Path | None:
        return Path(config[key]) if config[key] else None

    token_file = path("token_file")
    options = ServeOptions(
        address=config["address"],
        max_message_bytes=config["max_message_bytes"],
        tls_cert=path("tls_cert"),
        tls_key=path("tls_key"),
        tls_client_ca=path("tls_client_ca"),
        workers=config["workers"],
        max_streams=config["max_streams"],
        auth_token=TokenSource.from_file(token_file) if token_file else None,
        batch=BatchPolicy(max_batch_size=config["max_batch_size"], max_batch_delay=config["max_batch_delay"],
                          predict_timeout=config["predict_timeout"]),
        reuse_port=True,
        reload_interval=config["reload_interval"],
        drain=config["grace"],
        http_address=config["http_address"],
        site=path("site"),
    )
    run = RunOptions(config["refs"], config["all_models"], Path(config["protos"]), config["grace"],
                     config["access_log"], config["log_format"],
                     tuple(config["metrics"]) if config["metrics"] else None,  # type: ignore[arg-type]
                     config["cpu_affinity"])

    def on_ready(server: Any, port: int) -> None:
        served = [f"{m.name} {m.version} as {m.service_name}" for m in server.models]
        os.write(status_fd, (json.dumps({"port": port, "serving": served}) + "\n").encode())

        def listen() -> None:
            with os.fdopen(command_fd, "rb", buffering=0) as commands:
                for line in iter(commands.readline, b""):
                    if line.strip() == b"serve":
                        server.set_serving(True)
            os.kill(os.getpid(), signal.SIGTERM)  # the parent is gone

        threading.Thread(target=listen, name="protoreg-supervised", daemon=True).start()

    try:
        run_server(run, options, on_ready=on_ready, serve_metrics=False, index=config["index"])
    except ProtoregError as error:
        print(f"Error: {error}", file=sys.stderr, flush=True)
        os._exit(error.exit_code)
