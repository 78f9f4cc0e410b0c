"""The kubectl plugin's pure parts: kubectl's age format and table layout, where flags may go,
which URLs a token may be sent to, and the radar's rows. The plugin against the real kubectl and
API server: tests/integration/test_kubectl.py."""

from __future__ import annotations

import pytest

from approvals.kubectl import cli, commands, output
from approvals.kubectl.errors import Failure
from approvals.kubectl.headwind import base_url

MINUTE, HOUR, DAY = 60, 3600, 86400


@pytest.mark.parametrize(("seconds", "shown"), [
    (-5, "<invalid>"), (-0.5, "0s"), (0, "0s"), (119, "119s"), (120, "2m"), (150, "2m30s"),
    (10 * MINUTE, "10m"), (179 * MINUTE, "179m"), (3 * HOUR, "3h"), (3 * HOUR + 5 * MINUTE,
                                                                    "3h5m"),
    (8 * HOUR, "8h"), (47 * HOUR, "47h"), (2 * DAY, "2d"), (2 * DAY + 5 * HOUR, "2d5h"),
    (8 * DAY, "8d"), (729 * DAY, "729d"), (730 * DAY, "2y"), (731 * DAY, "2y1d"),
    (8 * 365 * DAY, "8y"),
])
def test_ages_are_printed_as_kubectl_prints_them(seconds, shown):
    """k8s.io/apimachinery/pkg/util/duration.HumanDuration, cut-off by cut-off."""
    assert output.human_duration(seconds) == shown


def test_tables_pad_like_kubectls_tabwriter():
    text = output.table(["NAME", "AGE"], [["a", "5m"], ["longer-name", None]])
    assert text == ("NAME          AGE\n"
                    "a             5m\n"
                    "longer-name   \n")
    assert output.table(["A", "B"], [[True, 1]]) == "A      B\ntrue   1\n"  # at least 6 wide


@pytest.mark.parametrize("argv", [
    ["-n", "team-a", "-o", "json", "radar"], ["radar", "-n", "team-a", "-o", "json"],
    ["-n=team-a", "radar", "-ojson"], ["--namespace=team-a", "radar", "--output=json"],
])
def test_kubectl_flags_go_before_or_after_the_command(argv):
    args = cli.parse(argv)
    assert (args.command, args.namespace, args.output) == ("radar", "team-a", "json")


def test_a_flag_before_the_command_is_not_reset_by_the_commands_default():
    args = cli.parse(["--context", "prod", "-A", "list", "--pending"])
    assert (args.context, args.all_namespaces, args.pending) == ("prod", True, True)


@pytest.mark.parametrize(("argv", "complaint"), [
    (["show", "x", "-A"], "applies to list and radar only"),
    (["approve", "x", "-o", "wide"], "-o wide is not an output of approve"),
    (["radar", "-o", "name"], "-o name is not an output of radar"),
    (["reject", "x"], "--reason"),
    (["radar", "--behind", "sometimes"], "invalid choice"),
])
def test_usage_errors_exit_2_with_the_reason(argv, complaint, capsys):
    with pytest.raises(SystemExit) as exited:
        cli.parse(argv)
    assert exited.value.code == 2
    assert complaint in capsys.readouterr().err


@pytest.mark.parametrize(("given", "kept"), [
    ("https://headwind.example/", "https://headwind.example"),
    ("http://localhost:8000", "http://localhost:8000"),
    ("http://127.0.0.1:8000/", "http://127.0.0.1:8000"),
    ("http://[::1]:8000", "http://[::1]:8000"),
])
def test_the_token_goes_to_https_or_loopback(given, kept):
    assert base_url(given) == kept


@pytest.mark.parametrize(("given", "complaint"), [
    (None, "pass --headwind-url"), ("", "pass --headwind-url"),
    ("http://headwind.example", "over plain HTTP"), ("http://10.0.0.1:8000", "over plain HTTP"),
    ("ftp://headwind.example", "is not an http(s) URL"), ("headwind.example", "not an http(s)"),
])
def test_the_token_is_not_sent_elsewhere(given, complaint):
    with pytest.raises(Failure, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        base_url(given)


@pytest.mark.parametrize(("reference", "version"), [
    ("reg.example/team/app:1.2.0", "1.2.0"), ("reg.example:5000/team/app:1.2.0", "1.2.0"),
    ("reg.example:5000/team/app", "app"), ("app:1.2.0@sha256:" + "a" * 64, "1.2.0"),
    ("oci://reg.example/charts/podinfo:6.1.0", "6.1.0"), ("", ""),
])
def test_the_running_version_is_the_tag(reference, version):
    assert commands.running_version(reference) == version


ITEM = {"kind": "Deployment", "namespace": "team-a", "name": "web", "container": "app",
        "current": "reg.example/team/app:1.0.0", "policy": "minor", "held": False,
        "openRequests": 1, "scheduledFor": None,
        "radar": {"newestAllowed": "1.1.0", "newestAny": "2.0.0", "behindPolicy": 1,
                  "behindAny": 2, "runningReleased": None, "waitingUntil": None,
                  "checkedAt": None, "surveyedAt": "2026-11-27T10:00:00Z"}}


def test_radar_rows():
    assert commands._radar_row(ITEM, wide=False, all_namespaces=False) == [
        "Deployment", "web", "app", "1.0.0", "1.1.0", 1, "minor"]
    assert commands._radar_row(ITEM, wide=False, all_namespaces=True)[0] == "team-a"
    current = {**ITEM, "radar": {**ITEM["radar"], "newestAllowed": None, "behindPolicy": 0}}
    assert commands._radar_row(current, wide=False, all_namespaces=False)[4:6] == ["1.0.0", 0]
    unsurveyed = {**ITEM, "radar": None}
    assert commands._radar_row(unsurveyed, wide=True, all_namespaces=False)[4:9] == [
        "<unknown>", "<unknown>", "minor", "<unknown>", "<unknown>"]
    wide = commands._radar_row(ITEM, wide=True, all_namespaces=False)
    assert wide[7:] == ["2.0.0", 2, "<none>", "<none>", "<none>", False, 1, "<none>",
                        "reg.example/team/app:1.0.0"]
