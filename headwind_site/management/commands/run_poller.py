"""``manage.py run_poller``: registry polling in its own process (caches + engine + poller).

For people who keep polling out of ``run_operator``. Several replicas are safe: they elect a
leader on their own Lease (``headwind-poller``). ``--once`` runs a single cycle and prints its
report; ``--dry-run`` records plans instead of acting on them. Metrics on
``HEADWIND_POLLER_METRICS_PORT`` (default 9092, ``0`` = off).
"""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from operator_app import kube


class Command(BaseCommand):
    help = "Poll registries for the opted-in workloads and act on what is found."

    def add_arguments(self, parser):
        parser.add_argument("--once", action="store_true",
                            help="run one cycle (every workload is due), print the report, exit")
        parser.add_argument("--dry-run", action="store_true",
                            help="decide but neither open UpdateRequests nor patch workloads")
        parser.add_argument("--lease-namespace", default=None,
                            help="namespace of the poller Lease (default $HEADWIND_NAMESPACE)")
        parser.add_argument("--identity", default=None, help="this replica's name in the Lease")

    def handle(self, *args, once=False, dry_run=False, lease_namespace=None, identity=None,
               **options):
        from headwind_site.running import CachesNotSynced, run_poller

        try:
            api = kube.api_client()
            kube.probe(api)
        except kube.ClusterUnreachable as exc:
            raise CommandError(f"cannot reach a Kubernetes cluster: {exc}") from None
        try:
            run_poller(api, once=once, dry_run=dry_run, lease_namespace=lease_namespace,
                       identity=identity, report=lambda report: self.stdout.write(report.summary()))
        except CachesNotSynced as exc:
            raise CommandError(str(exc)) from None
