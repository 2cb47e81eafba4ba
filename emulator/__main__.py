"""`python -m emulator --port N [--host H] [--profile FILE] [--api-key K]`."""

from __future__ import annotations

import argparse

from emulator.profile import load_profile
from emulator.server import serve


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve until interrupted."""
    parser = argparse.ArgumentParser(prog="python -m emulator", description="OpenAI-compatible emulator")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--profile", help="profile JSON file (default: $AJ_EMULATOR_PROFILE or built-in)")
    parser.add_argument("--api-key", default=None, help="require this bearer token on /v1 requests")
    args = parser.parse_args(argv)
    serve(args.host, args.port, load_profile(args.profile), args.api_key)


if __name__ == "__main__":
    main()
