"""accountgraph serve | worker | migrate | export-schema | token create | demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from accountgraph.config import Settings

log = logging.getLogger("accountgraph")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="accountgraph", description=__doc__)
    parser.add_argument("--log-level", default="INFO")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway (embedded servers if no URLs)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--demo", action="store_true",
                       help="load the demo enterprise and print API tokens")
    serve.add_argument("--worker", action=argparse.BooleanOptionalAction, default=None,
                       help="run an arq worker in-process (default: only when embedded)")

    commands.add_parser("worker", help="run an arq worker and the outbox relay")
    commands.add_parser("migrate", help="bring the database schema up to date")
    export = commands.add_parser("export-schema", help="print or write the GraphQL SDL")
    export.add_argument("--output", type=Path)
    commands.add_parser("demo", help="load the demo enterprise and print API tokens")

    token = commands.add_parser("token", help="API tokens")
    token_commands = token.add_subparsers(dest="token_command", required=True)
    create = token_commands.add_parser("create", help="create a token (printed once)")
    create.add_argument("--account", help="account id (global) or exact name; none: operator")
    create.add_argument("--name", default="cli")

    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if args.command == "export-schema":
        from accountgraph.schema import sdl

        if args.output:
            args.output.write_text(sdl())
        else:
            sys.stdout.write(sdl())
        return 0
    settings = Settings()
    try:
        if args.command == "serve":
            asyncio.run(_serve(settings, args.host, args.port, args.demo, args.worker))
        elif args.command == "worker":
            asyncio.run(_worker(settings))
        elif args.command == "migrate":
            asyncio.run(_migrate(settings))
        elif args.command == "demo":
            asyncio.run(_demo(settings))
        elif args.command == "token":
            asyncio.run(_token(settings, args.account, args.name))
    except KeyboardInterrupt:
        return 130
    return 0


async def _serve(settings: Settings, host: str, port: int, demo: bool, worker: bool | None
                 ) -> None:
    import uvicorn

    from accountgraph.app import create_app
    from accountgraph.runtime import backends, run_worker

    async with backends(settings, migrate=True) as found:
        if demo:
            await _print_demo(found.engine, host, port)
        in_process = settings.embedded if worker is None else worker
        background = [lambda: run_worker(found)] if in_process else []
        app = create_app(settings, found.engine, found.redis, background=background)
        server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="info",
                                               ws="websockets-sansio"))
        await server.serve()


async def _worker(settings: Settings) -> None:
    from accountgraph.runtime import backends, run_worker

    async with backends(settings, migrate=False) as found:
        await run_worker(found)


async def _migrate(settings: Settings) -> None:
    from accountgraph.runtime import backends

    async with backends(settings, migrate=True):
        log.info("database is up to date")


async def _demo(settings: Settings) -> None:
    from accountgraph.runtime import backends

    async with backends(settings, migrate=True) as found:
        await _print_demo(found.engine, None, None)


async def _print_demo(engine: object, host: str | None, port: int | None) -> None:
    from accountgraph.demo import load_demo

    tokens = await load_demo(engine)  # type: ignore[arg-type]
    lines = ["", "accountgraph demo enterprise loaded. API tokens (shown once):"]
    lines += [f"  {who:<10} {token}" for who, token in tokens.items()]
    if host is not None:
        lines += ["", f"GraphiQL: http://{host}:{port}/graphql  (Headers tab: "
                      f'{{"Authorization": "Bearer {tokens["master"]}"}})', ""]
    print("\n".join(lines), flush=True)


async def _token(settings: Settings, account: str | None, name: str) -> None:
    from accountgraph.demo import create_cli_token
    from accountgraph.runtime import backends

    async with backends(settings, migrate=True) as found:
        print(await create_cli_token(found.engine, account, name), flush=True)


if __name__ == "__main__":
    raise SystemExit(main())
