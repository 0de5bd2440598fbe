"""The CLI starts without the server's and etcd's libraries, which made every command slow."""

from __future__ import annotations

import subprocess
import sys

# Modules that only the API server, the controller manager or `skyshift up`'s bootstrap need.
SERVER_ONLY = ("fastapi", "aetcd", "grpc", "aiohttp", "argon2", "uvicorn")


def test_cli_import_leaves_out_server_libraries():
    script = (
        "import sys, skyshift_core.cli.main\n"
        f"print(' '.join(name for name in {SERVER_ONLY!r} if name in sys.modules))\n"
    )

    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)

    assert result.stdout.strip() == ""


def test_api_server_makes_unknown_user_hash_at_start(api_server: str):
    from skyshift_core.auth import passwords

    assert passwords._unknown_user_hash.cache_info().currsize == 1
