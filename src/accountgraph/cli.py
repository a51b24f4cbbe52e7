"""accountgraph serve | worker | migrate | export-schema | token create | demo | verify-ledger."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import textwrap
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any, TypeVar

from accountgraph import logs
from accountgraph.config import Settings

log = logging.getLogger("accountgraph")
T = TypeVar("T")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="accountgraph",
        description="The accountgraph GraphQL billing API and its tools; "
        "`accountgraph <command> --help` tells more.",
    )
    parser.add_argument(
        "--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR (default: %(default)s)"
    )
    parser.add_argument("--version", action="version", version=f"accountgraph {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = _command(
        commands,
        "serve",
        "run the gateway (embedded servers if no URLs)",
        "Serve the GraphQL API (and GraphiQL) on /graphql. With no DATABASE_URL and no "
        "REDIS_URL it starts an embedded PostgreSQL and Redis under ACCOUNTGRAPH_STATE_DIR, "
        "and an arq worker in-process.",
        SERVE_ENV,
    )
    serve.add_argument("--host", default="127.0.0.1", help="address (default: %(default)s)")
    serve.add_argument(
        "--port", type=int, default=8000, help="port; if taken, try another (default: %(default)s)"
    )
    serve.add_argument(
        "--demo", action="store_true", help="load the demo enterprise and print API tokens"
    )
    serve.add_argument(
        "--worker",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run an arq worker in-process (default: only when embedded)",
    )
    serve.add_argument(
        "--migrate",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run migrations at start; --no-migrate behind a migrate job (default: migrate)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (default 1; 2 on a 2-core machine uses both cores)",
    )

    _command(
        commands,
        "worker",
        "run an arq worker and the outbox relay",
        "Run background work: the outbox relay, the arq jobs (alerts, deliveries, sharing, "
        "budgets, auto-pay) and the periodic sweeps, until SIGTERM or SIGINT. Run M of them.",
        WORKER_ENV,
    )
    _command(
        commands,
        "migrate",
        "bring the database schema up to date",
        "Upgrade the database to the newest schema (Alembic); safe to run from several "
        "processes at once.",
        DATABASE_ENV,
    )
    export = _command(
        commands,
        "export-schema",
        "print or write the GraphQL SDL",
        "Print the GraphQL schema (SDL) built from the code, or write it to a file.",
        (),
    )
    export.add_argument(
        "--output", type=Path, help="file to write (default: print to standard output)"
    )
    _command(
        commands,
        "demo",
        "load the demo enterprise and print API tokens",
        "Load the demo enterprise (Account-M and Account-sub1 ... Account-sub5, with money, "
        "charges, alerts and invoices) if missing, and print new API tokens for an operator, "
        "the master and one member.",
        BACKENDS_ENV,
    )
    _command(
        commands,
        "verify-ledger",
        "recompute balances from postings; exit 1 on any difference",
        "Recompute every balance from its journal postings (F9) and print the differences; "
        "exit 1 if there are any.",
        DATABASE_ENV,
    )

    token = _command(
        commands,
        "token",
        "API tokens",
        "Create an API token, or revoke one (see their own --help).",
        BACKENDS_ENV,
    )
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = _command(
        token_commands,
        "create",
        "create a token (printed once)",
        "Create an API token and print it (only its hash is stored: it is shown once).",
        BACKENDS_ENV,
    )
    create.add_argument(
        "--account",
        help="account id (global) or exact name, e.g. Account-M (default: an operator token)",
    )
    create.add_argument(
        "--name", default="cli", help="a label for the token (default: %(default)s)"
    )
    revoke = _command(
        token_commands,
        "revoke",
        "revoke a token (every gateway forgets it at once)",
        "Revoke a token: it authenticates nobody from now on, and every gateway listening "
        "on Redis forgets it at once.",
        BACKENDS_ENV,
    )
    revoke.add_argument("token", help="the token's value (agt_...)")

    args = parser.parse_args(argv)
    # ACCOUNTGRAPH_LOG_FORMAT: json lines or text (unset: text on a terminal); logs.py.
    logs.configure(args.log_level, Settings().log_format)
    if args.command == "export-schema":
        from accountgraph.schema import sdl

        if args.output:
            args.output.write_text(sdl())
        else:
            sys.stdout.write(sdl())
        return 0
    settings = Settings()
    if args.command == "serve" and not port_free(args.host, args.port):
        # Before anything starts or is written (a demo's tokens would name the other server).
        print(
            f"accountgraph: {args.host}:{args.port} is already in use (another accountgraph "
            f"serve?); choose another port with --port {args.port + 1}",
            file=sys.stderr,
        )
        return 2
    mistake = preflight(settings, redis=args.command not in ("migrate", "verify-ledger"))
    if mistake is not None:
        print(f"accountgraph: {mistake}", file=sys.stderr)
        return 2
    try:
        if args.command == "serve" and args.workers > 1:
            _serve_workers(settings, args, args.workers)
        elif args.command == "serve":
            run(_serve(settings, args.host, args.port, args.demo, args.worker, args.migrate))
        elif args.command == "worker":
            run(_worker(settings))
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "demo":
            asyncio.run(_demo(settings))
        elif args.command == "token" and args.token_command == "revoke":
            return asyncio.run(_revoke_token(settings, args.token))
        elif args.command == "token":
            asyncio.run(_token(settings, args.account, args.name))
        elif args.command == "verify-ledger":
            return asyncio.run(_verify_ledger(settings))
    except KeyboardInterrupt:
        return 130
    return 0


DATABASE_ENV = (
    ("DATABASE_URL", "PostgreSQL; unset: embedded under ACCOUNTGRAPH_STATE_DIR"),
    ("ACCOUNTGRAPH_STATE_DIR", "the embedded servers' folder (default: .state)"),
    ("ACCOUNTGRAPH_STARTUP_WAIT_S", "seconds to wait for a configured server (default: 15)"),
    ("ACCOUNTGRAPH_LOG_FORMAT", "json or text (default: text on a terminal, else json)"),
)
BACKENDS_ENV = (
    *DATABASE_ENV[:1],
    ("REDIS_URL", "Redis; unset: embedded under ACCOUNTGRAPH_STATE_DIR"),
    *DATABASE_ENV[1:],
)
WORKER_ENV = (
    *BACKENDS_ENV,
    ("ACCOUNTGRAPH_QUEUE", "the arq queue (default: accountgraph:queue)"),
    ("ACCOUNTGRAPH_OUTBOX_POLL_S", "relay round without NOTIFY (default: 1.0)"),
    ("ACCOUNTGRAPH_SMTP_HOST", "email alerts (unset: email deliveries fail, saying so)"),
    ("ACCOUNTGRAPH_SMS_GATEWAY_URL", "SMS alerts (unset: SMS deliveries fail, saying so)"),
    ("ACCOUNTGRAPH_WEBHOOK_SECRET", "signs webhook deliveries"),
)
SERVE_ENV = (
    *WORKER_ENV,
    ("ACCOUNTGRAPH_OPERATOR_TOKEN", "a token accepted as a platform operator"),
    ("ACCOUNTGRAPH_GRAPHIQL", "serve GraphiQL on GET /graphql (default: true)"),
    ("ACCOUNTGRAPH_CORS_ORIGINS", "browser origins allowed to call the API (default: none)"),
    ("ACCOUNTGRAPH_DB_POOL_SIZE", "connections per process (default: 10)"),
)


def _command(
    commands: Any, name: str, summary: str, description: str, env: tuple[tuple[str, str], ...]
) -> argparse.ArgumentParser:
    """A subcommand whose --help says what it does, its defaults and what it reads."""
    if env:
        width = max(len(variable) for variable, _ in env)
        lines = [f"  {variable:<{width}}  {meaning}" for variable, meaning in env]
        epilog = "environment (every ACCOUNTGRAPH_* setting: README, Configuration):\n"
        epilog += "\n".join(lines)
    else:
        epilog = "environment: reads none"
    parser: argparse.ArgumentParser = commands.add_parser(
        name,
        help=summary,
        description=textwrap.fill(description, 88),
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run`` on uvloop where it is installed (uvicorn[standard] brings it; as
    ``uvicorn.run`` does for ``--workers N``), else on asyncio's own loop."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvicorn[standard] depends on it
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


async def _serve(
    settings: Settings, host: str, port: int, demo: bool, worker: bool | None, migrate: bool
) -> None:
    import uvicorn

    from accountgraph.app import create_app
    from accountgraph.runtime import backends
    from workers.settings import run_worker

    async with backends(settings, migrate=migrate) as found:
        assert found.redis is not None
        tokens = await load_demo_tokens(found.engine) if demo else {}
        in_process = settings.embedded if worker is None else worker
        background = [lambda: run_worker(found)] if in_process else []
        app = create_app(settings, found.engine, found.redis, background=background)
        # Slow or greedy clients: idle keep-alive connections close after 5 s, request
        # heads over 16 KiB are refused (h11's default), WebSocket messages are capped at
        # the body limit; bodies themselves are bounded by bodylimit.BodyLimit (size, time).
        server = uvicorn.Server(
            uvicorn.Config(app, host=host, port=port, **uvicorn_options(settings))
        )
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again; with the
        # default handler that killed the process before the embedded servers were stopped.
        previous = signal.signal(signal.SIGTERM, _terminated)
        # The banner comes last, once the port answers: nothing scrolls it away.
        announcing = asyncio.create_task(
            _announce(lambda: server.started, demo_banner(tokens, host, port, settings))
        )
        try:
            await server.serve()
        except Terminated:
            log.info("stopped by SIGTERM")
        finally:
            announcing.cancel()
            signal.signal(signal.SIGTERM, previous)


async def _announce(started: Callable[[], bool], banner: str) -> None:
    while not started():  # noqa: ASYNC110 - uvicorn's `started` is a flag, not an event
        await asyncio.sleep(0.05)
    print(banner, flush=True)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("accountgraph")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree, not installed
        return "unknown"


def preflight(settings: Settings, *, redis: bool = True) -> str | None:
    """The setup mistake that would stop the command, as one line naming the setting and
    the fix; None when the URLs parse, their servers answer a connection and the state
    directory (for what is embedded) is writable."""
    from urllib.parse import urlsplit

    checks: list[tuple[str, str | None, tuple[str, ...], int]] = [
        ("DATABASE_URL", settings.database_url, ("postgresql", "postgres"), 5432)
    ]
    if redis:
        checks.append(("REDIS_URL", settings.redis_url, ("redis", "rediss", "unix"), 6379))
    for name, url, schemes, default_port in checks:
        if url is None:
            continue
        parts = urlsplit(url)
        scheme = parts.scheme.split("+")[0]
        if scheme not in schemes:
            return (
                f"{name}={url!r} is not a {schemes[0]}:// URL "
                f"(e.g. {schemes[0]}://user@127.0.0.1:{default_port}/name)"
            )
        if scheme == "unix" or not parts.hostname:  # a unix socket (?host=/run/...): no probe
            continue
        try:
            port = parts.port or default_port
        except ValueError:
            return f"{name}={url!r} has a port that is not a number"
        if not reachable(parts.hostname or "", port, wait_s=settings.startup_wait_s, name=name):
            what = "PostgreSQL" if name == "DATABASE_URL" else "Redis"
            return (
                f"{name}: nothing answers at {parts.hostname}:{port}; is {what} running there? "
                f"(unset {name} to start an embedded {what})"
            )
    if settings.database_url is None or (redis and settings.redis_url is None):
        state = settings.state_dir
        try:
            state.mkdir(parents=True, exist_ok=True)
            probe = state / ".write-check"
            probe.write_text("")
            probe.unlink()
        except OSError as error:
            return (
                f"ACCOUNTGRAPH_STATE_DIR={str(state)!r} is not a writable folder "
                f"({error.strerror}); point it at one, or set DATABASE_URL and REDIS_URL"
            )
    return None


def reachable(host: str, port: int, *, wait_s: float, name: str) -> bool:
    """Whether ``host:port`` accepts a connection within ``wait_s`` seconds."""
    import socket
    import time

    deadline = time.monotonic() + wait_s
    waiting = False
    while True:
        try:
            with socket.create_connection((host, port), timeout=3):
                return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            if not waiting:
                log.info("waiting up to %.0f s for %s at %s:%s", wait_s, name, host, port)
                waiting = True
            time.sleep(0.5)


def port_free(host: str, port: int) -> bool:
    """Whether the gateway could listen on ``host:port`` now."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def listening(host: str, port: int) -> bool:
    """Whether something accepts connections on ``host:port`` (a connect, never a bind,
    which could take the port from the server about to listen on it)."""
    import socket

    target = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    try:
        with socket.create_connection((target, port), timeout=0.5):
            return True
    except OSError:
        return False


class Terminated(Exception):
    """SIGTERM after uvicorn's graceful shutdown: unwinds ``serve`` so that what it started
    (the embedded servers, the in-process worker) is stopped."""


def _terminated(signum: int, frame: object) -> None:
    raise Terminated()


def uvicorn_options(settings: Settings) -> dict[str, Any]:
    """How the gateway is served, one process or several.

    Slow or greedy clients: idle keep-alive connections close after 5 s, request heads
    over 16 KiB are refused (h11's default), WebSocket messages are capped at the body
    limit; bodies themselves are bounded by bodylimit.BodyLimit (size, time). Forwarded
    headers are the app's to judge (ACCOUNTGRAPH_TRUSTED_PROXIES), not uvicorn's: by
    default it believes 127.0.0.1."""
    return {
        "log_level": "info",
        "ws": "websockets-sansio",
        "timeout_keep_alive": 5,
        "h11_max_incomplete_event_size": 16 * 1024,
        "ws_max_size": settings.max_body_bytes,
        "proxy_headers": False,
        # Our log format in every uvicorn process; one line per request comes from the
        # app (requestid.py, with the request id and principal), not uvicorn's access log.
        "log_config": logs.uvicorn_log_config(
            settings.log_format, logging.getLevelName(logging.getLogger().level)
        ),
        "access_log": False,
        # SIGTERM: stop accepting, close WebSockets (1012 service restart), let started
        # requests finish for up to this long, then cancel what is left (README, "Shutdown
        # and upgrades").
        "timeout_graceful_shutdown": settings.shutdown_grace_s,
    }


def _serve_workers(settings: Settings, args: argparse.Namespace, workers: int) -> None:
    """``workers`` uvicorn processes, each ``accountgraph.asgi:app`` with its own pool.

    This process keeps what they share: it starts the embedded servers when no URLs are
    set (and hands their URLs to the workers' environment), migrates, loads the demo and,
    when asked (the default only when embedded), runs the arq worker, on an event loop in
    a thread; uvicorn's supervisor needs the main thread for its signals."""
    import os
    import threading

    import uvicorn

    from accountgraph.runtime import backends
    from workers.settings import run_worker

    loop = asyncio.new_event_loop()
    ready = threading.Event()
    stopping = asyncio.Event()
    failures: list[BaseException] = []

    async def hold() -> None:
        async with backends(settings, migrate=args.migrate) as found:
            os.environ["DATABASE_URL"] = found.database_url
            os.environ["REDIS_URL"] = found.redis_url
            tokens = await load_demo_tokens(found.engine) if args.demo else {}
            in_process = settings.embedded if args.worker is None else args.worker
            worker = asyncio.create_task(run_worker(found)) if in_process else None
            ready.set()
            banner = demo_banner(tokens, args.host, args.port, settings)
            announcing = asyncio.create_task(
                _announce(lambda: listening(args.host, args.port), banner)
            )
            await stopping.wait()
            announcing.cancel()
            if worker is not None:
                worker.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker

    def keep() -> None:
        try:
            loop.run_until_complete(hold())
        except BaseException as error:  # handed to the main thread
            failures.append(error)
        finally:
            ready.set()

    holder = threading.Thread(target=keep, name="accountgraph-backends", daemon=True)
    holder.start()
    ready.wait()
    if failures:
        raise failures[0]
    try:
        config = uvicorn.Config(
            "accountgraph.asgi:app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=workers,
            **uvicorn_options(settings),
        )
        _supervise(config)
    finally:
        loop.call_soon_threadsafe(stopping.set)
        # The in-process worker's running jobs get their grace too, and the embedded
        # servers their stop.
        holder.join(settings.shutdown_grace_s + 30)


def _supervise(config: Any) -> None:
    """``uvicorn.run`` for ``config.workers`` processes, except that on SIGTERM or SIGINT
    the supervisor also closes its own copy of the listening socket. uvicorn's keeps it
    open until its workers have drained and exited: meanwhile the kernel accepted new
    connections into a backlog nobody read (they hung, then were reset) instead of
    refusing them, so a client or load balancer could not go elsewhere at once."""
    from uvicorn.supervisors import Multiprocess

    class Supervisor(Multiprocess):
        def stop_listening(self) -> None:
            for sock in self.sockets:
                sock.close()

        def handle_term(self) -> None:
            self.stop_listening()
            super().handle_term()

        def handle_int(self) -> None:
            self.stop_listening()
            super().handle_int()

    Supervisor(config, sockets=[config.bind_socket()]).run()


async def _worker(settings: Settings) -> None:
    """Until SIGTERM or SIGINT; then arq finishes its running jobs and shuts down."""

    from accountgraph.runtime import backends
    from workers.settings import run_worker

    async with backends(settings, migrate=False) as found:
        task = asyncio.create_task(run_worker(found))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _migrate(settings: Settings) -> None:
    from accountgraph.runtime import backends

    async with backends(settings, migrate=True, redis=False):
        log.info("database is up to date")


async def _demo(settings: Settings) -> None:
    from accountgraph.runtime import backends

    async with backends(settings, migrate=True) as found:
        tokens = await load_demo_tokens(found.engine)
        print(demo_banner(tokens, None, None, settings), flush=True)


async def load_demo_tokens(engine: object) -> dict[str, str]:
    from accountgraph.demo import load_demo

    return await load_demo(engine)  # type: ignore[arg-type]


def demo_banner(
    tokens: dict[str, str], host: str | None, port: int | None, settings: Settings | None = None
) -> str:
    """Short: where it serves, where its state is (when embedded), the demo's tokens and a
    GraphiQL link that signs in as the master."""
    lines = [""]
    url = None
    if host is not None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/graphql"
        lines.append(f"accountgraph is serving {url} (GraphiQL in a browser)")
    if settings is not None and None in (settings.database_url, settings.redis_url):
        lines.append(f"embedded servers' state (and tokens): {settings.state_dir.resolve()}")
    if tokens:
        lines.append("demo enterprise loaded; API tokens (shown once):")
        lines += [f"  {who:<9} {token}" for who, token in tokens.items()]
    if tokens and url is not None:
        header = f'{{"Authorization": "Bearer {tokens["master"]}"}}'
        lines += [
            f"GraphiQL as the master: {url}#token={tokens['master']}",
            f"  (or put {header} in its Headers tab)",
        ]
    return "\n".join([*lines, ""])


async def _token(settings: Settings, account: str | None, name: str) -> None:
    from accountgraph.demo import create_cli_token
    from accountgraph.runtime import backends

    async with backends(settings, migrate=True) as found:
        print(await create_cli_token(found.engine, account, name), flush=True)


async def _revoke_token(settings: Settings, token: str) -> int:
    from accountgraph.accounts.principals import announce_revoked
    from accountgraph.accounts.tokens import revoke
    from accountgraph.runtime import backends

    async with backends(settings, migrate=False) as found:
        async with found.engine.begin() as conn:
            revoked = await revoke(conn, token)
        if found.redis is not None:
            await announce_revoked(found.redis, revoked)
    print(f"token: {len(revoked)} revoked", flush=True)
    return 0 if revoked else 1


async def _verify_ledger(settings: Settings) -> int:
    from accountgraph.funds.public import verify_ledger as verify
    from accountgraph.runtime import backends

    async with (
        backends(settings, migrate=False, redis=False) as found,
        found.engine.connect() as conn,
    ):
        differences = await verify(conn)
    for difference in differences:
        print(f"ledger: {difference}")
    print(f"ledger: {len(differences)} difference(s)", flush=True)
    return 1 if differences else 0


if __name__ == "__main__":
    raise SystemExit(main())
