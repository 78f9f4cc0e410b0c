#!/usr/bin/env bash
# `make demo`: runs Headwind locally. Without KUBECONFIG it starts the testbed (a real
# kube-apiserver, controller-manager, scheduler, kwok node, registry and Redis on loopback).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
PORT=${HEADWIND_DEMO_PORT:-8000}
STATE=${HEADWIND_DEMO_DIR:-/tmp/headwind-demo}
mkdir -p "$STATE"
export HEADWIND_DEV=true DJANGO_SETTINGS_MODULE=headwind_site.settings
export DATABASE_URL=${DATABASE_URL:-sqlite:///$STATE/db.sqlite3}

pids=()
cleanup() {
  trap - EXIT INT TERM
  echo "==> stopping"
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ -n "${STARTED_TESTBED:-}" ]; then $PY -m tests.testbed --dir "$STATE/testbed" down; fi
}
trap cleanup EXIT INT TERM

if [ -z "${KUBECONFIG:-}" ]; then
  echo "==> no KUBECONFIG: starting the local testbed"
  $PY -m tests.testbed --dir "$STATE/testbed" down >/dev/null 2>&1 || true
  $PY -m tests.testbed --dir "$STATE/testbed" up \
      --notify-url "http://127.0.0.1:$PORT/webhook/registry" > "$STATE/testbed.env"
  STARTED_TESTBED=1
  # shellcheck disable=SC1091
  source "$STATE/testbed.env"
  # The testbed registry authenticates its notifications with this token.
  export HEADWIND_WEBHOOK_REGISTRY_TOKEN="$HEADWIND_TESTBED_NOTIFY_TOKEN"
  export HEADWIND_POLLING_ENABLED=${HEADWIND_POLLING_ENABLED:-true}
  export HEADWIND_POLLING_INTERVAL=${HEADWIND_POLLING_INTERVAL:-60}
fi
export HEADWIND_OPERATOR_METRICS_PORT=${HEADWIND_OPERATOR_METRICS_PORT:-9090}
export HEADWIND_WORKER_METRICS_PORT=${HEADWIND_WORKER_METRICS_PORT:-9091}
if [ -z "${REDIS_URL:-}" ]; then
  echo "REDIS_URL is not set and no testbed was started: point it at a Redis server" >&2
  exit 1
fi

$PY manage.py migrate --noinput -v0
ADMIN_PASSWORD_FILE="$STATE/admin-password"
[ -s "$ADMIN_PASSWORD_FILE" ] || $PY -c "import secrets;print(secrets.token_urlsafe(12))" > "$ADMIN_PASSWORD_FILE"
ADMIN_PASSWORD=$(cat "$ADMIN_PASSWORD_FILE")
$PY manage.py shell -v 0 -c "
from django.contrib.auth import get_user_model
User = get_user_model()
user, _ = User.objects.get_or_create(username='admin', defaults={'is_staff': True, 'is_superuser': True})
user.set_password('$ADMIN_PASSWORD'); user.is_staff = user.is_superuser = True; user.save()
from approvals.models import NamespaceGrant
NamespaceGrant.objects.get_or_create(user=user, pattern='*')
"
$PY manage.py collectstatic --noinput -v0

mkdir -p "$STATE/logs"
$PY -m headwind_site.web -b 127.0.0.1 -p "$PORT" > "$STATE/logs/web.log" 2>&1 &
pids+=($!)
$PY -m celery -A headwind_site worker --pool=threads --concurrency=4 --loglevel=INFO \
    > "$STATE/logs/worker.log" 2>&1 &
pids+=($!)
$PY manage.py run_operator > "$STATE/logs/operator.log" 2>&1 &
pids+=($!)

for _ in $(seq 1 100); do
  curl -fs "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
  sleep 0.2
done
if [ -n "${STARTED_TESTBED:-}" ]; then
  sleep 3  # the operator lists the cluster and takes the Lease
  $PY scripts/demo_seed.py || echo "demo seed failed; see the logs" >&2
fi

cat <<MSG

Headwind is running: http://127.0.0.1:$PORT/
  admin user:     admin
  admin password: $ADMIN_PASSWORD
  logs:           $STATE/logs/ (web, worker, operator)
MSG
[ -n "${STARTED_TESTBED:-}" ] && echo "  testbed env:    source $STATE/testbed.env   (kubeconfig, registry, Redis)"
echo "Press Ctrl-C to stop."
wait -n "${pids[@]}" || true
echo "a Headwind process exited; see $STATE/logs/" >&2
