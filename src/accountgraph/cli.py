"""accountgraph serve | worker | migrate | export-schema | token create | demo | verify-ledger."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from accountgraph import logs
from accountgraph.config import Settings

log = logging.getLogger("accountgraph")
T = TypeVar("T")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accountgraph", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--version", action="version", version=f"accountgraph {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway (embedded servers if no URLs)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
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
        help="run migrations at start (--no-migrate behind a migrate job)",
    )
    serve.add_argument(
        "--workers",
        type=int,
        default=1,
        help="uvicorn worker processes (default 1; 2 on a 2-core machine uses both cores)",
    )

    commands.add_parser("worker", help="run an arq worker and the outbox relay")
    commands.add_parser("migrate", help="bring the database schema up to date")
    export = commands.add_parser("export-schema", help="print or write the GraphQL SDL")
    export.add_argument("--output", type=Path)
    commands.add_parser("demo", help="load the demo enterprise and print API tokens")
    commands.add_parser(
        "verify-ledger", help="recompute balances from postings; exit 1 on any difference"
    )

    token = commands.add_parser("token", help="API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="create a token (printed once)")
    create.add_argument("--account", help="account id (global) or exact name; none: operator")
    create.add_argument("--name", default="cli")
    revoke = token_commands.add_parser(
        "revoke", help="revoke a token (every gateway forgets it at once)"
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
        if demo:
            await _print_demo(found.engine, host, port)
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
        try:
            await server.serve()
        except Terminated:
            log.info("stopped by SIGTERM")
        finally:
            signal.signal(signal.SIGTERM, previous)


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
            if args.demo:
                await _print_demo(found.engine, args.host, args.port)
            in_process = settings.embedded if args.worker is None else args.worker
            worker = asyncio.create_task(run_worker(found)) if in_process else None
            ready.set()
            await stopping.wait()
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
        uvicorn.run(
            "accountgraph.asgi:app",
            factory=True,
            host=args.host,
            port=args.port,
            workers=workers,
            **uvicorn_options(settings),
        )
    finally:
        loop.call_soon_threadsafe(stopping.set)
        holder.join(60)


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
        await _print_demo(found.engine, None, None)


async def _print_demo(engine: object, host: str | None, port: int | None) -> None:
    from accountgraph.demo import load_demo

    tokens = await load_demo(engine)  # type: ignore[arg-type]
    print(demo_banner(tokens, host, port), flush=True)


def demo_banner(tokens: dict[str, str], host: str | None, port: int | None) -> str:
    """The tokens and, when serving, a GraphiQL link that signs in as the master."""
    lines = ["", "accountgraph demo enterprise loaded. API tokens (shown once):"]
    lines += [f"  {who:<10} {token}" for who, token in tokens.items()]
    if host is not None:
        shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
        url = f"http://{f'[{shown}]' if ':' in shown else shown}:{port}/graphql"
        header = f'{{"Authorization": "Bearer {tokens["master"]}"}}'
        lines += [
            "",
            "GraphiQL as the master of the demo enterprise (the link's #token= part fills",
            "the Authorization header in; browsers never send it to the server):",
            f"  {url}#token={tokens['master']}",
            f"or open {url} and put this in the Headers tab:",
            f"  {header}",
            "then run the EnterpriseTree query in the editor (play button or Ctrl-Enter).",
            f'From a shell: curl -s {url} -H "Authorization: Bearer {tokens["master"]}" '
            """-H 'Content-Type: application/json' -d '{"query": "{ viewer { kind } }"}'""",
            "",
        ]
    return "\n".join(lines)


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
