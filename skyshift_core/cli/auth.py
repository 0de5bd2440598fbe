"""Authentication commands: login, logout, whoami, register, and the config, invite, user, role and
token command groups."""

from __future__ import annotations

import re
import shlex
import sys
from datetime import datetime
from typing import Annotated, Any

import typer

from skyshift_core.cli.common import (
    CaFileOption,
    DocumentOutputOption,
    ServerOption,
    client_for,
    connection_for,
    not_found_message,
    open_client,
    print_document,
)
from skyshift_core.cli.config import ClientConfig, Connection, default_config_path
from skyshift_core.cli.tables import format_table
from skyshift_core.client import SkyShiftClient
from skyshift_core.errors import ForbiddenError, InvalidError, NotFoundError
from skyshift_core.objects import Role, User
from skyshift_core.objects.meta import validate_name

config_app = typer.Typer(help="Show and switch the contexts of the client config.", no_args_is_help=True)
invite_app = typer.Typer(help="Create, list and revoke invites that register new users.", no_args_is_help=True)
user_app = typer.Typer(help="List and delete users and set their passwords.", no_args_is_help=True)
role_app = typer.Typer(help="Bind users to Roles and unbind them.", no_args_is_help=True)
token_app = typer.Typer(help="Create, list and revoke service tokens.", no_args_is_help=True)

_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_DURATION_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}

PasswordStdinOption = Annotated[
    bool, typer.Option("--password-stdin", help="Read the password from the first line of standard input.")
]


# The shortest invite lifetime that the API server accepts (skyshift_core.auth.routes).
MIN_INVITE_LIFETIME_SECONDS = 60
# The API server's message when a requested lifetime exceeds its maximum (skyshift_core.auth.routes).
_SERVER_LIFETIME_MAXIMUM = re.compile(r"^invalid lifetime_seconds \d+: the maximum is (\d+)$")


def parse_duration(text: str | None, option: str = "duration") -> int | None:
    """Parse `90`, `90s`, `30m`, `12h` or `7d` into seconds; None stays None.

    `option` (such as `--lifetime`) names the value in the error message."""
    if text is None:
        return None
    match = _DURATION.match(text.strip())
    if not match or int(match.group(1)) == 0:
        raise InvalidError(f"invalid {option} {text!r}: expected a positive number with s, m, h or d, for example 12h")
    return int(match.group(1)) * _DURATION_UNITS[match.group(2)]


def format_duration(seconds: int) -> str:
    """Write seconds in the largest unit that divides them, as parse_duration reads it: 2592000 is `30d`."""
    for unit in ("d", "h", "m"):
        if seconds % _DURATION_UNITS[unit] == 0:
            return f"{seconds // _DURATION_UNITS[unit]}{unit}"
    return f"{seconds}s"


def _call_with_lifetime(client: SkyShiftClient, path: str, body: dict[str, Any], lifetime: str | None) -> Any:
    """POST `body`; when the server rejects its lifetime as too long, name --lifetime and the server's maximum."""
    try:
        return client.call("POST", path, body)
    except InvalidError as error:
        match = _SERVER_LIFETIME_MAXIMUM.match(error.message)
        if lifetime is None or match is None:
            raise
        maximum = format_duration(int(match.group(1)))
        raise InvalidError(
            f"invalid --lifetime {lifetime!r}: the server's maximum is {maximum}; pass --lifetime {maximum} or less"
        ) from error


def _read_password(from_stdin: bool, prompt: str, confirm: bool = False) -> str:
    if from_stdin:
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise InvalidError("--password-stdin was given, but standard input has no password on its first line")
        return line
    return typer.prompt(prompt, hide_input=True, confirmation_prompt=confirm)


def _when(text: str | None) -> str:
    if not text:
        return "never"
    return datetime.fromisoformat(text).strftime("%Y-%m-%d %H:%M:%S %Z")


def _save_credentials(connection: Connection, context_name: str | None, user: str, token: str) -> str:
    """Store a new token in the client config as the current context; return the context's name.

    The context keeps the connection's CA file as an absolute path, so it works from any directory.
    """
    config = ClientConfig.load()
    current = config.current()
    name = context_name or (current.name if current is not None and current.server == connection.server else None)
    name = name or "default"
    config.set_context(name, connection.server, user=user, token=token, certificate_authority=connection.ca_file)
    config.save()
    return name


# ---- login, logout, whoami, register ------------------------------------------------------------


def login(
    ctx: typer.Context,
    username: Annotated[str, typer.Option("--username", "-u", prompt=True, help="User name.")],
    password_stdin: PasswordStdinOption = False,
    lifetime: Annotated[
        str | None,
        typer.Option("--lifetime", help="How long the token stays valid, such as 12h or 7d. Default: the server's."),
    ] = None,
    context: Annotated[
        str | None,
        typer.Option("--context", help="Context to store the token in. Default: the current one, else 'default'."),
    ] = None,
    server: ServerOption = None,
    ca_file: CaFileOption = None,
) -> None:
    """Log in with a user name and password and store the token in the client config."""
    password = _read_password(password_stdin, "Password")
    connection = connection_for(ctx, server, ca_file)
    body: dict[str, Any] = {"username": username, "password": password}
    if lifetime is not None:
        body["lifetime_seconds"] = parse_duration(lifetime, "--lifetime")
    with open_client(connection, None) as client:
        result = _call_with_lifetime(client, "/api/v1/login", body, lifetime)
    name = _save_credentials(connection, context, username, result["token"])
    typer.echo(
        f"Logged in to {connection.server} as {username}; the token expires {_when(result['expires_at'])} "
        f"and is stored in context '{name}' of {default_config_path()}"
    )


def logout(ctx: typer.Context, server: ServerOption = None) -> None:
    """Revoke the current token on the server and remove it from the client config."""
    with client_for(ctx, server) as client:
        result = client.call("POST", "/api/v1/logout")
    config = ClientConfig.load()
    current = config.current()
    if current is not None and current.token is not None:
        current.token = None
        config.save()
    typer.echo(result.get("message", "Logged out"))


def whoami(ctx: typer.Context, output: DocumentOutputOption = None, server: ServerOption = None) -> None:
    """Show who the current token belongs to, the user's Roles and when the token expires."""
    with client_for(ctx, server) as client:
        result = client.call("GET", "/api/v1/whoami")
    if print_document(result, output):
        return
    typer.echo(f"User:    {result['user']}")
    # A Role bound in one namespace alone shows as ROLE (in NAMESPACE).
    scoped = [
        f"{role} (in {namespace})"
        for namespace, roles in (result.get("namespace_roles") or {}).items()
        for role in roles
    ]
    typer.echo(f"Roles:   {', '.join([*result['roles'], *scoped]) or '<none>'}")
    token = result["token"]
    typer.echo(f"Token:   {token['id']} ({token['type']}, expires {_when(token['expires_at'])})")


def register(
    ctx: typer.Context,
    invite: Annotated[str, typer.Option("--invite", help="The invite code, as skyshift invite create printed it.")],
    username: Annotated[str, typer.Option("--username", "-u", prompt=True, help="The new user's name.")],
    password_stdin: PasswordStdinOption = False,
    email: Annotated[str | None, typer.Option("--email", help="The new user's email address.")] = None,
    context: Annotated[
        str | None,
        typer.Option("--context", help="Context to store the token in. Default: the current one, else 'default'."),
    ] = None,
    server: ServerOption = None,
    ca_file: CaFileOption = None,
) -> None:
    """Create your user with an invite, then store its first token in the client config."""
    password = _read_password(password_stdin, "Password", confirm=True)
    connection = connection_for(ctx, server, ca_file)
    body = {"invite": invite, "username": username, "password": password, "email": email}
    with open_client(connection, None) as client:
        result = client.call("POST", "/api/v1/register", body)
    name = _save_credentials(connection, context, username, result["token"])
    typer.echo(f"User {username} registered and logged in to {connection.server} (context '{name}')")


# ---- config ---------------------------------------------------------------------------------------


@config_app.command("get-contexts")
def get_contexts() -> None:
    """List the contexts of the client config; `*` marks the current one."""
    config = ClientConfig.load()
    rows = [
        [
            "*" if context.name == config.current_context else "",
            context.name,
            context.server,
            context.user or "<none>",
            context.namespace or "",
        ]
        for context in config.contexts
    ]
    typer.echo(format_table(["CURRENT", "NAME", "SERVER", "USER", "NAMESPACE"], rows))


@config_app.command("set-context")
def set_context(
    name: Annotated[str | None, typer.Argument(help="Context to change; or pass --current.")] = None,
    current: Annotated[bool, typer.Option("--current", help="Change the current context.")] = False,
    namespace: Annotated[
        str | None,
        typer.Option("--namespace", help="Namespace of commands without --namespace; an empty value removes it."),
    ] = None,
) -> None:
    """Set the namespace of a context of the client config, as kubectl config set-context does."""
    if (name is None) == (not current):
        raise typer.BadParameter("name a context, or pass --current for the current one (not both)")
    if namespace is None:
        raise typer.BadParameter("nothing to set: pass --namespace NS (or --namespace '' to remove it)")
    config = ClientConfig.load()
    if name is None:
        context = config.current()
        if context is None:
            raise InvalidError(
                f"the client config {config.path} has no current context; run skyshift up or skyshift login"
            )
    else:
        context = config.get(name)
    try:
        context.namespace = validate_name(namespace, "namespace") if namespace else None
    except ValueError as error:
        raise typer.BadParameter(str(error), param_hint="--namespace") from None
    config.save()
    setting = f"namespace {context.namespace!r}" if context.namespace else "no namespace (default)"
    typer.echo(f"Context {context.name!r} modified: {setting}")


@config_app.command("use-context")
def use_context(name: Annotated[str, typer.Argument(help="Context to make current.")]) -> None:
    """Make another context of the client config current."""
    config = ClientConfig.load()
    config.get(name)
    config.current_context = name
    config.save()
    typer.echo(f"Switched to context {name!r}")


# ---- invites --------------------------------------------------------------------------------------


@invite_app.command("create")
def invite_create(
    ctx: typer.Context,
    roles: Annotated[list[str], typer.Option("--role", "-r", help="Role the new user gets; repeat for several.")],
    lifetime: Annotated[
        str | None,
        typer.Option("--lifetime", help="How long the invite stays valid, such as 2d. Default: the server's (7d)."),
    ] = None,
    description: Annotated[str, typer.Option("--description", help="A note on whom the invite is for.")] = "",
    output: DocumentOutputOption = None,
    server: ServerOption = None,
) -> None:
    """Create a single-use invite; the code is shown only now."""
    body: dict[str, Any] = {"roles": roles, "description": description}
    if lifetime is not None:
        body["lifetime_seconds"] = parse_duration(lifetime, "--lifetime")
        if body["lifetime_seconds"] < MIN_INVITE_LIFETIME_SECONDS:
            raise InvalidError(
                f"invalid --lifetime {lifetime!r}: an invite lasts at least 1m, time for its user to register; "
                "pass --lifetime 1m or more"
            )
    with client_for(ctx, server) as client:
        result = _call_with_lifetime(client, "/api/v1/invites", body, lifetime)
        server_url, ca_file = client.server_url, client.ca_file
    if print_document(result, output):
        return
    typer.echo(
        f"Invite {result['id']} for Roles {', '.join(result['roles'])}, valid until {_when(result['expires_at'])}:"
    )
    typer.echo(result["invite"])
    # The new user must trust the same CA as this connection, or registering fails TLS verification.
    ca_option = f" --certificate-authority {shlex.quote(ca_file)}" if ca_file else ""
    typer.echo(
        f"The new user runs: skyshift --server {shlex.quote(server_url)}{ca_option} register "
        f"--invite {result['invite']} --username NAME"
    )
    if ca_file:
        typer.echo(f"Give the new user a copy of the CA file {ca_file}; change the path above to where they keep it.")


@invite_app.command("list")
def invite_list(ctx: typer.Context, output: DocumentOutputOption = None, server: ServerOption = None) -> None:
    """List invites: their Roles, state, creator and expiry (never their codes)."""
    with client_for(ctx, server) as client:
        result = client.call("GET", "/api/v1/invites")
    if print_document(result, output):
        return
    rows = [
        [
            item["id"],
            ",".join(item["roles"]),
            item["state"],
            item["created_by"],
            _when(item["expires_at"]),
            item["used_by"] or "<none>",
        ]
        for item in result["items"]
    ]
    typer.echo(format_table(["ID", "ROLES", "STATE", "CREATED-BY", "EXPIRES", "USED-BY"], rows))


@invite_app.command("revoke")
def invite_revoke(
    ctx: typer.Context,
    invite_id: Annotated[str, typer.Argument(help="Invite id, from skyshift invite list.")],
    server: ServerOption = None,
) -> None:
    """Revoke an invite so nobody can register with it."""
    with client_for(ctx, server) as client:
        client.call("DELETE", f"/api/v1/invites/{invite_id}")
    typer.echo(f"invite {invite_id} revoked")


# ---- users ----------------------------------------------------------------------------------------


@user_app.command("list")
def user_list(ctx: typer.Context, server: ServerOption = None) -> None:
    """List users and the Roles bound to each (the Roles column needs the right to list Roles)."""
    with client_for(ctx, server) as client:
        users = client.list_all("users")["items"]
        try:
            roles = client.list_all("roles")["items"]
        except ForbiddenError:
            roles = None  # Only the ROLES column needs this right.
    rows = []
    for user in users:
        name = user["metadata"]["name"]
        bound = [role["metadata"]["name"] for role in roles or [] if name in role["spec"].get("users", [])]
        row = [name, user["spec"].get("email") or "<none>"]
        if roles is not None:
            row.append(",".join(bound) or "<none>")
        rows.append(row)
    headers = ["NAME", "EMAIL"] + (["ROLES"] if roles is not None else [])
    typer.echo(format_table(headers, rows))


@user_app.command("delete")
def user_delete(
    ctx: typer.Context, name: Annotated[str, typer.Argument(help="User to delete.")], server: ServerOption = None
) -> None:
    """Delete a user, with its password, its tokens and its Role bindings."""
    with client_for(ctx, server) as client:
        try:
            client.delete(User, name)
        except NotFoundError as error:
            raise NotFoundError(not_found_message(User, name, None)) from error
    typer.echo(f"user.skyshift/{name} deleted")


@user_app.command("set-password")
def user_set_password(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User whose password to set.")],
    password_stdin: PasswordStdinOption = False,
    server: ServerOption = None,
) -> None:
    """Set a user's password. Changing your own password requires the current one too (with
    --password-stdin, two lines: current, then new)."""
    with client_for(ctx, server) as client:
        me = client.call("GET", "/api/v1/whoami")["user"]
        body: dict[str, Any] = {}
        if me == name:
            body["current_password"] = _read_password(password_stdin, "Current password")
        body["password"] = _read_password(password_stdin, "New password", confirm=True)
        result = client.call("PUT", f"/api/v1/users/{name}/password", body)
    typer.echo(result.get("message", f"password of user '{name}' set"))


# ---- roles ----------------------------------------------------------------------------------------


def _change_binding(
    ctx: typer.Context, server: str | None, role_name: str, user: str, bind: bool, namespace: str | None
) -> bool:
    """Add or remove `user` in the Role's binding, in every namespace or in `namespace` alone;
    return False when there was nothing to change."""
    with client_for(ctx, server) as client:
        try:
            role = client.get(Role, role_name)
        except NotFoundError as error:
            raise NotFoundError(not_found_message(Role, role_name, None)) from error
        spec = role["spec"]
        if namespace is None:
            users: list[str] = list(spec.get("users") or [])
        else:
            spec["namespace_users"] = dict(spec.get("namespace_users") or {})
            users = list(spec["namespace_users"].get(namespace) or [])
        if (user in users) == bind:
            return False
        users = [*users, user] if bind else [name for name in users if name != user]
        if namespace is None:
            spec["users"] = users
        elif users:
            spec["namespace_users"][namespace] = users
        else:
            spec["namespace_users"].pop(namespace, None)
        # The resource_version in `role` makes the update fail rather than overwrite a concurrent change.
        client.update(role)
    return True


@role_app.command("bind")
def role_bind(
    ctx: typer.Context,
    role: Annotated[str, typer.Argument(help="Role to bind.")],
    user: Annotated[str, typer.Argument(help="User who gets the Role.")],
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace", "-n",
            help="Bind the Role in this namespace alone, as a Kubernetes RoleBinding does: its rules then apply "
            "there and to no cluster-scoped kind. Default: every namespace.",
        ),
    ] = None,
    server: ServerOption = None,
) -> None:
    """Give a user a Role. You must hold every permission of that Role yourself (in the namespace, with -n)."""
    changed = _change_binding(ctx, server, role, user, bind=True, namespace=namespace)
    where = f" in namespace {namespace}" if namespace else ""
    typer.echo(f"role.skyshift/{role} {'bound to' if changed else 'was already bound to'} user {user}{where}")


@role_app.command("unbind")
def role_unbind(
    ctx: typer.Context,
    role: Annotated[str, typer.Argument(help="Role to unbind.")],
    user: Annotated[str, typer.Argument(help="User who loses the Role.")],
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace", "-n", help="Remove the binding in this namespace. Default: the one in every namespace."
        ),
    ] = None,
    server: ServerOption = None,
) -> None:
    """Take a Role away from a user."""
    changed = _change_binding(ctx, server, role, user, bind=False, namespace=namespace)
    where = f" in namespace {namespace}" if namespace else ""
    typer.echo(f"role.skyshift/{role} {'unbound from' if changed else 'was not bound to'} user {user}{where}")


# ---- tokens ---------------------------------------------------------------------------------------

UserOption = Annotated[str | None, typer.Option("--user", help="Whose tokens. Default: yours.")]


def _token_user(client: SkyShiftClient, user: str | None) -> str:
    return user or client.call("GET", "/api/v1/whoami")["user"]


@token_app.command("create")
def token_create(
    ctx: typer.Context,
    user: UserOption = None,
    description: Annotated[str, typer.Option("--description", help="What the token is for.")] = "",
    lifetime: Annotated[
        str | None, typer.Option("--lifetime", help="How long it stays valid, such as 90d. Default: until revoked.")
    ] = None,
    server: ServerOption = None,
) -> None:
    """Create a service token for automation; it is printed only now."""
    body: dict[str, Any] = {"description": description, "lifetime_seconds": parse_duration(lifetime, "--lifetime")}
    with client_for(ctx, server) as client:
        result = client.call("POST", f"/api/v1/users/{_token_user(client, user)}/tokens", body)
    typer.echo(result["token"])


@token_app.command("list")
def token_list(ctx: typer.Context, user: UserOption = None, server: ServerOption = None) -> None:
    """List a user's tokens (ids, kinds and expiry; never the tokens)."""
    with client_for(ctx, server) as client:
        result = client.call("GET", f"/api/v1/users/{_token_user(client, user)}/tokens")
    rows = [
        [
            item["id"],
            item["type"],
            _when(item["created_at"]),
            _when(item["expires_at"]),
            item["description"] or "<none>",
        ]
        for item in result["items"]
    ]
    typer.echo(format_table(["ID", "TYPE", "CREATED", "EXPIRES", "DESCRIPTION"], rows))


@token_app.command("revoke")
def token_revoke(
    ctx: typer.Context,
    token_id: Annotated[str, typer.Argument(help="Token id, from skyshift token list.")],
    user: UserOption = None,
    server: ServerOption = None,
) -> None:
    """Revoke a token; requests with it fail from then on."""
    with client_for(ctx, server) as client:
        owner = _token_user(client, user)
        client.call("DELETE", f"/api/v1/users/{owner}/tokens/{token_id}")
    typer.echo(f"token {token_id} of user {owner} revoked")


def register_commands(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("whoami")(whoami)
    app.command("register")(register)
    app.add_typer(config_app, name="config")
    app.add_typer(invite_app, name="invite")
    app.add_typer(user_app, name="user")
    app.add_typer(role_app, name="role")
    app.add_typer(token_app, name="token")
