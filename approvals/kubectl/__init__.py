"""``kubectl headwind``: Headwind's kubectl plugin, a client program (no Django).

kubectl runs the ``kubectl-headwind`` executable it finds on PATH (the console script
``approvals.kubectl.cli:main``) for ``kubectl headwind ...``. It reaches the cluster with the
user's own kubeconfig through :mod:`operator_app.kube`, and Headwind's REST API (reject,
rollback, radar) with the user's own bearer token. ``docs/kubectl.md`` describes every command.

* :mod:`.cli` — flags, sub-commands, errors and exit statuses;
* :mod:`.commands` — what each sub-command does;
* :mod:`.output` — kubectl-style tables, ``-o json|yaml|name``;
* :mod:`.headwind` — the REST client for Headwind's API.
"""
