"""``manage.py run_poller``: registry polling in its own process (caches + engine + poller).

For people who keep polling out of ``run_operator``. Several replicas are safe: they elect a
leader on their own Lease (``headwind-poller``). ``--once`` runs a single cycle and prints its
report; ``--dry-run`` records plans instead of acting on them. Metrics on
``HEADWIND_POLLER_METRICS_PORT`` (default 9092, ``0`` = off).
"""

from __future__ import annotations

import logging
import os
import signal
import threading

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from operator_app import kube, metrics

log = logging.getLogger("operator_app.run_poller")


class RecordingDispatcher:
    """``--dry-run``: plans are printed in the report, nothing is proposed or applied."""

    def propose(self, plan) -> None:
        pass

    def apply(self, plan) -> None:
        pass


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
        from operator_app.cache import Informer, WorkloadCache
        from operator_app.engine import Engine
        from operator_app.leader import LeaderElector
        from operator_app.runner import ClusterDispatcher, _ensure_namespace
        from operator_app.workloads import KINDS
        from registry.poller import Poller, polling_enabled

        try:
            api = kube.api_client()
            kube.probe(api)
        except kube.ClusterUnreachable as exc:
            raise CommandError(f"cannot reach a Kubernetes cluster: {exc}") from None
        if not once and not polling_enabled():
            log.warning("HEADWIND_POLLING_ENABLED is not true; run_poller polls anyway "
                        "(do not also enable polling inside run_operator)")

        stop = threading.Event()
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, lambda *_: stop.set())
        cache = WorkloadCache()
        informers = [Informer(api, kind, cache, stop) for kind in KINDS.values()]
        for informer in informers:
            informer.start()
        dispatcher = RecordingDispatcher() if dry_run else ClusterDispatcher(api)
        poller = Poller(api, cache, Engine(cache, dispatcher))
        try:
            if once:
                for informer in informers:
                    if not informer.synced.wait(60):
                        raise CommandError(f"{informer.kind.kind} cache did not sync in 60s")
                report = poller.run_once()
                self.stdout.write(report.summary())
                return
            metrics.serve(int(os.environ.get("HEADWIND_POLLER_METRICS_PORT", "9092")))
            lease_namespace = lease_namespace or settings.HEADWIND_NAMESPACE
            _ensure_namespace(api, lease_namespace)
            elector = LeaderElector(api, lease_namespace, name="headwind-poller",
                                    identity=identity, stop=stop)
            elector.start()

            def may_run() -> bool:
                return elector.leading() and all(i.synced.is_set() for i in informers)

            poller.run_forever(stop, may_run)
            elector.join(timeout=10)
        finally:
            stop.set()
            poller.close()
