"""The `skyshift` command line: typer commands that talk to the API server through `skyshift_core.client`."""
