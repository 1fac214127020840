"""``python -m examples.chat_app``: serve the chat app with uvicorn on loopback."""

from __future__ import annotations

import argparse

import uvicorn

from examples.chat_app.app import create_app


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m examples.chat_app", description=__doc__)
    parser.add_argument(
        "--host", default="127.0.0.1", help="interface to listen on (default: loopback only)"
    )
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    print(f"setpoint chat app on http://{args.host}:{args.port}  (Ctrl-C to stop)", flush=True)
    uvicorn.run(create_app(), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
