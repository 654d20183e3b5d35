"""Backtests: recorded market data through the pipeline's own logic against a simulated venue.

``makerflow backtest`` (:mod:`makerflow.commands.backtest`) runs :func:`run.run_backtest`:

* :mod:`.inputs` reads recorded files or recorded Kafka topics (bounded by the end offsets
  taken at the start) and tags every event with its stream, position and merge time;
* :mod:`.flow` routes each event to every quoted market it concerns (the Bytewax key) and
  merges each key's streams into one order that depends on the data alone (:mod:`.merge`);
* :mod:`.engine` runs, per quoted market, the ticks, index, risk, quoting and reconciliation
  logic of the live operators and the :mod:`.venue` in one event-time loop: the venue's
  acks, fills and balances come back after their latency as the events the private stream
  brings live, through the same ``on_*`` methods;
* the streams land in ``<out>/<name>.jsonl`` (the demo's names), put together after the run
  in a fixed order, so any number of workers writes the same bytes; :mod:`makerflow.reports`
  then writes the report.

:mod:`.settings` reads the services' TOML tables plus ``--param`` overrides and sweeps;
:mod:`.summary` gives a run's headline figures; :mod:`.synthetic` is the Avellaneda-Stoikov
synthetic market (``--market synthetic``).
"""
