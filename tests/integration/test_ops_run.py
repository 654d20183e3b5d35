"""``makerflow run``'s command lines, recovery store and refusals (no process is started:
``--print`` shows what would run; the kill -9 tests and test_ops_scaling run it for real)."""

from __future__ import annotations

import logging
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from makerflow.cli import main
from tests.conftest import REPO
from tests.processes import kill_if_running


def test_print_shows_the_runner_command(capsys, tmp_path: Path) -> None:
    assert main(["run", "quoter", "--workers", "4", "--threads", "--print"]) == 0
    out = capsys.readouterr().out.split()
    assert out == [sys.executable, "-m", "bytewax.run", "makerflow.flows.quoter:flow", "-w", "4"]
    assert main(["run", "quoter", "--print"]) == 0  # one worker: one process, no supervisor
    assert capsys.readouterr().out.split()[-2:] == ["-w", "1"]


def test_print_shows_one_command_per_process_of_a_cluster(capsys, monkeypatch) -> None:
    monkeypatch.delenv("MAKERFLOW_METRICS_PORT", raising=False)
    assert main(["run", "ticks", "--workers", "3", "--print"]) == 0
    lines = [shlex.split(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 3
    addresses = lines[0][-1]
    hosts = addresses.split(";")
    assert len(set(hosts)) == 3 and all(h.startswith("127.0.0.1:") for h in hosts)
    for k, line in enumerate(lines):
        # Each process its own metrics port (the default's, + k), one worker, index k.
        assert line == [
            f"MAKERFLOW_METRICS_PORT={9464 + k}",
            sys.executable,
            *("-m", "bytewax.run", "makerflow.flows.ticks:flow", "-w", "1"),
            *("-i", str(k), "-a", addresses),
        ]


def test_print_passes_process_id_and_addresses_through(capsys) -> None:
    argv = ["run", "ticks", "-w", "2", "-i", "1", "-a", "host-a:2101;host-b:2101", "--print"]
    assert main(argv) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert shlex.split(line)[-6:] == ["-w", "2", "-i", "1", "-a", "host-a:2101;host-b:2101"]


def test_recovery_store_is_created_once_then_resumed(capsys, tmp_path: Path, monkeypatch) -> None:
    store = tmp_path / "rec"
    assert main(["run", "ticks", "-w", "2", "--recovery", str(store), "--print"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"mkdir -p {store}"
    assert lines[1].endswith(f"-m bytewax.recovery {store} 2")  # one partition per worker
    assert len(lines) == 4  # two processes, one store
    for k, line in enumerate(lines[2:]):
        assert f"makerflow.flows.ticks:flow -w 1 -i {k} -a " in line
        assert line.endswith(f" -r {store} -s 5 -b 0")
    assert not store.exists()  # --print changes nothing

    from makerflow.commands import run as run_cmd

    assert run_cmd.init_recovery(store, 2) is True
    assert sorted(p.name for p in store.iterdir()) == ["part-0.sqlite3", "part-1.sqlite3"]
    assert run_cmd.init_recovery(store, 2) is False  # resumed, never re-initialised
    assert main(["run", "all-in-one", "--recovery", str(store), "-s", "1", "--print"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    assert line.endswith(f"makerflow.flows.all_in_one:flow -w 1 -r {store} -s 1 -b 0")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "tickz"], "unknown service 'tickz'"),
        (["run", "ticks", "-w", "0"], "--workers must be at least 1"),
        (["run", "ticks", "-i", "0"], "go together"),
        (["run", "ticks", "--threads", "-i", "0", "-a", "h:1"], "--threads is for one process"),
        (["run", "ticks", "-s", "0"], "--snapshot-s must be > 0"),
    ],
)
def test_bad_arguments_exit_2(argv, message, capsys) -> None:
    assert main([*argv, "--print"]) == 2
    assert message in capsys.readouterr().err


def test_a_configuration_error_exits_2_before_anything(tmp_path: Path, capsys, monkeypatch):
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[ticks]\nalig_ms = 5\n")
    monkeypatch.setenv("MAKERFLOW_CONFIG", str(cfg))
    store = tmp_path / "rec"
    assert main(["run", "ticks", "--recovery", str(store)]) == 2
    assert "[ticks] alig_ms: unknown key" in capsys.readouterr().err
    assert not store.exists()


def test_supervisor_stops_the_others_when_one_fails_and_exits_with_its_status(caplog) -> None:
    from makerflow.commands.cluster import Supervisor

    caplog.set_level(logging.INFO, logger="makerflow.commands.cluster")
    # Process 0 ignores SIGTERM: it is killed once the grace period is over.
    cmds = [["sh", "-c", "trap '' TERM; sleep 60"], ["sh", "-c", "sleep 0.2; exit 3"]]
    sup = Supervisor(cmds, [{}, {}], grace_s=0.3)
    assert sup.run() == 3
    assert [p.returncode for p in sup.procs] == [-signal.SIGKILL, 3]
    assert "process 1 exited with 3: stopping the others" in caplog.text
    assert "process 0 did not stop in 0.3 s: SIGKILL" in caplog.text


def test_a_peer_that_exits_with_an_error_after_a_kill_does_not_hide_the_kill(caplog) -> None:
    """A Bytewax worker whose peer is SIGKILLed panics and exits 1, often before the supervisor
    sees the kill. Here the error is even seen first: the kill, within the settle time, still
    decides the status."""
    from makerflow.commands.cluster import Supervisor

    caplog.set_level(logging.INFO, logger="makerflow.commands.cluster")
    cmds = [["sh", "-c", "sleep 0.2; exit 1"], ["sh", "-c", "sleep 0.4; kill -9 $$"]]
    sup = Supervisor(cmds, [{}, {}], grace_s=0.3, settle_s=1.0)
    assert sup.run() == 128 + signal.SIGKILL
    assert [p.returncode for p in sup.procs] == [1, -signal.SIGKILL]
    assert "process 1 killed by SIGKILL: stopping the others" in caplog.text


def test_the_processes_do_not_outlive_a_killed_supervisor(tmp_path: Path) -> None:
    script = (
        "import sys\n"
        "from makerflow.commands.cluster import Supervisor\n"
        "sys.exit(Supervisor([['sleep', '60'], ['sleep', '60']], [{}, {}]).run())\n"
    )
    sup = subprocess.Popen([sys.executable, "-c", script], cwd=REPO)
    try:
        deadline = time.monotonic() + 30
        children: list[str] = []
        while len(children) < 2:
            assert sup.poll() is None and time.monotonic() < deadline
            time.sleep(0.05)
            children = Path(f"/proc/{sup.pid}/task/{sup.pid}/children").read_text().split()
        sup.kill()
        sup.wait()
        # The kernel sends each SIGTERM (PR_SET_PDEATHSIG): dead, or a zombie until reaped.
        for pid in children:
            while Path(f"/proc/{pid}").exists():
                stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                if stat[0] in ("Z", "X"):
                    break
                assert time.monotonic() < deadline, f"process {pid} outlived the supervisor"
                time.sleep(0.05)
    finally:
        kill_if_running(sup)


@pytest.mark.parametrize("argv", [["run"], ["--log-level", "WARNING", "run"], ["quoting-markets"]])
def test_a_command_imports_only_its_own_module(argv: list[str]) -> None:
    # Every command's imports cost seconds of CPU (the backtest engine, the in-process EVM),
    # which `makerflow run` paid before starting a service (and its supervisor kept paying).
    script = (
        "import sys\n"
        "from makerflow.cli import _parser_for\n"
        f"p = _parser_for({argv!r})\n"
        "heavy = ('eth_tester', 'makerflow.backtest.run', 'makerflow.commands.backtest')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
        "p.parse_args(['-h'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    heavy, *usage = out.stdout.splitlines()
    assert heavy == "", out.stderr
    assert argv[-1] in "\n".join(usage), out.stdout  # its parser is there


def test_help_still_lists_every_command(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(c in out for c in ("backtest", "run", "topics", "quoting-markets", "replay"))
