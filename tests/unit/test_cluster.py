"""The pure parts of ``makerflow run``'s local cluster: addresses, each process's
environment, exit statuses, and which failure is taken as the cause."""

from __future__ import annotations

import itertools
import signal

import pytest

from makerflow.commands.cluster import (
    exit_status,
    local_addresses,
    process_env,
    root_cause,
    shell_line,
)


def test_addresses_are_distinct_loopback_ports_even_when_a_port_comes_twice() -> None:
    ports = iter([5001, 5001, 5002, 5001, 5003])
    assert local_addresses(3, lambda: next(ports)) == "127.0.0.1:5001;127.0.0.1:5002;127.0.0.1:5003"
    counter = itertools.count(6000)
    assert local_addresses(1, lambda: next(counter)) == "127.0.0.1:6000"


def test_each_process_serves_metrics_on_its_own_port() -> None:
    assert process_env({}, 0)["MAKERFLOW_METRICS_PORT"] == "9464"  # the default
    assert process_env({}, 2)["MAKERFLOW_METRICS_PORT"] == "9466"
    env = {"MAKERFLOW_METRICS_PORT": "9100", "OTHER": "x"}
    assert process_env(env, 1) == {"MAKERFLOW_METRICS_PORT": "9101", "OTHER": "x"}
    assert env["MAKERFLOW_METRICS_PORT"] == "9100"  # not changed in place
    assert process_env({"MAKERFLOW_METRICS_PORT": "0"}, 3)["MAKERFLOW_METRICS_PORT"] == "0"
    with pytest.raises(ValueError, match="past 65535"):
        process_env({"MAKERFLOW_METRICS_PORT": "65535"}, 1)
    with pytest.raises(ValueError, match="not a port number"):
        process_env({"MAKERFLOW_METRICS_PORT": "x"}, 0)


def test_exit_status_follows_the_shell_convention() -> None:
    assert exit_status(0) == 0
    assert exit_status(3) == 3
    assert exit_status(-signal.SIGKILL) == 137
    assert exit_status(-signal.SIGTERM) == 143


def test_shell_line_shows_only_the_variables_that_differ() -> None:
    line = shell_line(["python", "-a", "x;y"], {"A": "1", "B": "two words"}, {"A": "1"})
    assert line == "B='two words' python -a 'x;y'"


def test_a_process_killed_by_a_signal_is_the_cause_over_peers_that_exited_with_an_error() -> None:
    assert root_cause([(0, 1), (1, -signal.SIGKILL)]) == (1, -signal.SIGKILL)
    assert root_cause([(2, -signal.SIGTERM), (0, -signal.SIGKILL)]) == (2, -signal.SIGTERM)
    assert root_cause([(1, 3), (0, 1)]) == (1, 3)  # no signal: the first seen
    with pytest.raises(ValueError, match="no failure"):
        root_cause([])
