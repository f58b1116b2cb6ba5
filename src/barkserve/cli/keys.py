"""`barkserve keys create|list|revoke`: API keys in the server's database (the same --database-url / --jobs-dir)."""

from __future__ import annotations

import os
from typing import Any

import click

from barkserve.cli.options import friendly_errors, job_options
from barkserve.config import ServerConfig
from barkserve.errors import InvalidRequest


def key_store(flags: dict[str, Any]) -> Any:
    """The key store of the database the server with these settings uses."""
    from barkserve.auth.keys import KeyStore

    config = ServerConfig.from_sources(flags)
    if not config.database_url:
        config.jobs_dir.mkdir(parents=True, exist_ok=True)
    return KeyStore(config.database)


def limit_text(value: int | None, unit: str) -> str:
    return "-" if value is None else f"{value}/{unit}"


@click.group()
def keys() -> None:
    """Create, list and revoke API keys (stored as SHA-256 hashes in the job database)."""


@keys.command()
@click.option("--name", required=True, help="A name for the key (its owner or use), shown in logs and metrics.")
@click.option("--scopes", default="speak", show_default=True,
              help="Comma-separated: speak (synthesis and its files), clone (voices), jobs, admin (everything, "
                   "every key's resources).")  # fmt: skip
@click.option("--rate", help="Requests per minute: N or N/min. [no limit]")
@click.option("--quota", help="Audio seconds per day: N or N/day. [no limit]")
@click.option("--secret-from-env", "secret_env", metavar="VAR",
              help="Register the key held in environment variable VAR (made with `barkserve keys new-secret`, "
                   "e.g. from a Kubernetes Secret) instead of making one; nothing secret is printed.")  # fmt: skip
@job_options
@friendly_errors
def create(name: str, scopes: str, rate: str | None, quota: str | None, secret_env: str | None, **flags: Any) -> None:
    """Create a key and print its secret (on stdout, once: it cannot be shown again)."""
    given = None
    if secret_env is not None:
        given = os.environ.get(secret_env, "")
        if not given.strip():
            raise InvalidRequest(
                f"--secret-from-env {secret_env}: that environment variable is not set or empty; set it to a key "
                "made with `barkserve keys new-secret`"
            )
    key, secret = key_store(flags).create(name, scopes, rate_per_min=rate, quota=quota, secret=given)
    if given is not None:
        click.echo(
            f"registered key {key.name!r} ({key.id}, scopes {','.join(sorted(key.scopes))}) from ${secret_env}",
            err=True,
        )
        return
    click.echo(secret)
    click.echo(
        f"created key {key.name!r} (scopes {','.join(sorted(key.scopes))}, rate {limit_text(key.rate_per_min, 'min')}"
        f", quota {limit_text(key.quota_sec_per_day, 'day')}). The secret above is shown only now: store it. "
        f"Clients send it as 'Authorization: Bearer <key>'.",
        err=True,
    )


@keys.command("new-secret")
def new_secret_command() -> None:
    """Print a fresh key without storing it anywhere: register it later with `keys create --secret-from-env`."""
    from barkserve.auth.keys import new_secret

    click.echo(new_secret())


@keys.command("list")
@job_options
@friendly_errors
def list_keys(**flags: Any) -> None:
    """List the keys: name, id, scopes, limits, when made and revoked (never the secrets)."""
    rows = key_store(flags).list_keys()
    if not rows:
        click.echo("no keys; create one with `barkserve keys create --name NAME --scopes ...`", err=True)
        return
    click.echo(f"{'NAME':<24} {'ID':<16} {'SCOPES':<22} {'RATE':<10} {'QUOTA':<12} {'CREATED':<19} STATE")
    for key in rows:
        state = f"revoked {key.revoked_at:%Y-%m-%d %H:%M}" if key.revoked_at else "active"
        click.echo(
            f"{key.name:<24} {key.id:<16} {','.join(sorted(key.scopes)):<22} "
            f"{limit_text(key.rate_per_min, 'min'):<10} {limit_text(key.quota_sec_per_day, 'day'):<12} "
            f"{key.created_at:%Y-%m-%d %H:%M:%S} {state}"
        )


@keys.command()
@click.argument("name")
@job_options
@friendly_errors
def revoke(name: str, **flags: Any) -> None:
    """Revoke the active key NAME: its next request fails, on every server process at once."""
    key = key_store(flags).revoke(name)
    click.echo(f"revoked key {key.name!r} ({key.id})")


@keys.command("webhook-secret")
@click.argument("name", required=False)
@job_options
@friendly_errors
def webhook_secret(name: str | None, **flags: Any) -> None:
    """Print the secret that signs the job notifications of key NAME (no NAME: of jobs made without keys,
    such as `barkserve book --notify`). Receivers verify each POST's webhook-signature with it."""
    from barkserve.jobs.notify import Signer
    from barkserve.jobs.store import JobStore

    config = ServerConfig.from_sources(flags)
    if not config.database_url:
        config.jobs_dir.mkdir(parents=True, exist_ok=True)
    tenant = None
    if name is not None:
        matches = [k for k in key_store(flags).list_keys() if k.name == name and k.revoked_at is None]
        if not matches:
            raise click.ClickException(f"no active key named {name!r}; `barkserve keys list` shows them")
        tenant = matches[0].id
    click.echo(Signer.for_store(JobStore(config.database), config.webhook_secret).secret(tenant))
