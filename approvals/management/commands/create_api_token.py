"""``manage.py create_api_token USER NAME``: a personal API token; the key is printed once."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from approvals.auth import create_api_token


class Command(BaseCommand):
    help = ("Create an API token for USER and print its key once (only its hash is stored). "
            "Use it as 'Authorization: Token <key>'.")

    def add_arguments(self, parser):
        parser.add_argument("user", help="username of an existing, active user")
        parser.add_argument("name", help="what the token is for, e.g. 'ci' or 'laptop'")

    def handle(self, *args, user: str, name: str, **options):
        model = get_user_model()
        try:
            owner = model._default_manager.get(**{model.USERNAME_FIELD: user})
        except model.DoesNotExist:
            raise CommandError(f"no user {user!r}") from None
        if not owner.is_active:
            raise CommandError(f"user {user!r} is not active")
        if not name.strip():
            raise CommandError("NAME must not be empty")
        _token, key = create_api_token(owner, name.strip())
        self.stdout.write(key)
        self.stderr.write(f"API token {name.strip()!r} created for {user}; the key above is "
                          "shown only once.")
