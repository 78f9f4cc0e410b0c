"""``manage.py run_operator``: connects to the cluster and runs the operator
(:func:`headwind_site.running.run_operator`)."""

from __future__ import annotations

import logging

from django.core.management.base import BaseCommand, CommandError

from operator_app import kube

log = logging.getLogger("headwind.run_operator")


class Command(BaseCommand):
    help = "Run Headwind's watchers and event processing against the configured cluster."

    def add_arguments(self, parser):
        parser.add_argument(
            "--check", action="store_true", help="connect, report the cluster and exit"
        )
        parser.add_argument("--lease-namespace", default=None,
                            help="namespace of the leader Lease (default $HEADWIND_NAMESPACE)")
        parser.add_argument("--identity", default=None,
                            help="this replica's name in the Lease (default host-pid)")

    def handle(self, *args, check: bool = False, lease_namespace=None, identity=None, **options):
        try:
            api = kube.api_client()
            info = kube.probe(api)
        except kube.ClusterUnreachable as exc:
            raise CommandError(f"cannot reach a Kubernetes cluster: {exc}") from None
        log.info("connected to %s (Kubernetes %s, credentials from %s)",
                 info.server, info.version, info.source)
        self.stdout.write(f"connected to {info.server} (Kubernetes {info.version})")
        if check:
            return
        from headwind_site.running import run_operator  # imported late to keep --check cheap

        run_operator(api, lease_namespace=lease_namespace, identity=identity)
