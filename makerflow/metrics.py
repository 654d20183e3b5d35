"""Prometheus metrics shared by every service.

The objects live in one module so that each metric is registered once per process, whatever
combination of operators a flow composes. Operators (the Bytewax wrappers, never the pure
logic) update them; ``makerflow.sinks.metrics`` serves them over HTTP.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

EVENTS_IN = Counter(
    "makerflow_events_in",
    "Events a step has taken in.",
    ["step"],
)
EVENTS_OUT = Counter(
    "makerflow_events_out",
    "Events a step has emitted.",
    ["step"],
)
DEAD_LETTERS = Counter(
    "makerflow_dead_letters",
    "Inputs that could not become events and went to the dead-letter topic.",
    ["step"],
)
EVENT_TIME_LAG = Gauge(
    "makerflow_event_time_lag_seconds",
    "Receive time minus event time of the latest event a step has seen.",
    ["step"],
)
TICK_TO_QUOTE_LATENCY = Histogram(
    "makerflow_tick_to_quote_latency_seconds",
    "Time from a tick entering the quoter to its order intents leaving it.",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 1.0),
)
QUOTING_SIGMA = Gauge(
    "makerflow_quoting_sigma",
    "The quoter's volatility estimate of the mid price, price per square root of a second.",
    ["market"],
)
QUOTING_INTENSITY = Gauge(
    "makerflow_quoting_intensity",
    "The quoter's order-arrival intensity in use: a (trades per second and side at the mid)"
    " and kappa (1/price), fitted from trades or the configured fallback.",
    ["market", "param"],
)
KILL_SWITCH_ENGAGED = Gauge(
    "makerflow_kill_switch_engaged",
    "1 while the scope is HALTED by risk, 0 while it trades.",
    ["scope"],
)
KILL_SWITCH_REASON = Gauge(
    "makerflow_kill_switch_reason",
    "1 for the cause of a scope's halt while it is HALTED (the breach kinds, or manual);"
    " joined onto KillSwitchEngaged as its reason label.",
    ["scope", "reason"],
)
EXPOSURE = Gauge(
    "makerflow_exposure",
    "Net position per account and asset, in units of the asset.",
    ["account", "asset"],
)
RECONCILIATION_BREAKS = Counter(
    "makerflow_reconciliation_breaks",
    "Reconciliation windows that ended in BREAK.",
    ["account", "asset"],
)
ORDER_REJECTS = Counter(
    "makerflow_order_rejects",
    "Orders rejected, by the exchange or by a local guard, by reason class.",
    ["venue", "reason"],
)
ORDERS_SENT = Counter(
    "makerflow_orders_sent",
    "Order requests sent to the exchange, by action.",
    ["venue", "action"],
)
DATA_QUALITY = Counter(
    "makerflow_data_quality_events",
    "Data-quality findings per market and kind (gap, crossed, duplicate, stale...).",
    ["market", "kind"],
)
MARKET_DATA_AGE = Gauge(
    "makerflow_market_data_age_seconds",
    "Wall-clock seconds since the last market-data event per market (read at the edge).",
    ["market"],
)
INDEX_ORACLE_DEVIATION = Gauge(
    "makerflow_index_oracle_deviation_bps",
    "Absolute deviation of the index from the on-chain oracle, in basis points.",
    ["basket"],
)
CONSUMER_LAG = Gauge(
    "makerflow_kafka_consumer_lag",
    "Messages behind the end of the partition per topic and partition.",
    ["topic", "partition"],
)
WEB3_RPC_ERRORS = Counter(
    "makerflow_web3_rpc_errors",
    "Failed JSON-RPC polls per web3 source partition (pool or feed); each is retried.",
    ["source"],
)
RISK_REALIZED_VOLATILITY = Gauge(
    "makerflow_risk_realized_volatility_bps",
    "Realized volatility of the mid price in the current risk window, in basis points.",
    ["market"],
)
RISK_LARGEST_MOVE = Gauge(
    "makerflow_risk_largest_move_bps",
    "Largest rise or fall of the mid price within the current risk window, in basis points.",
    ["market"],
)
OPEN_ORDER_NOTIONAL = Gauge(
    "makerflow_open_order_notional",
    "Notional (price times remaining quantity, in the quote asset) resting in open orders.",
    ["market"],
)
ORDER_REJECT_RATIO = Gauge(
    "makerflow_order_reject_ratio",
    "Rejected over submitted orders in the current risk window.",
    ["market"],
)
ORDER_CANCEL_RATIO = Gauge(
    "makerflow_order_cancel_ratio",
    "Canceled over submitted orders in the current risk window.",
    ["market"],
)
PNL = Gauge(
    "makerflow_pnl",
    "Realized plus unrealized PnL in the quote asset, per risk scope (market, account, global).",
    ["scope"],
)
DRAWDOWN = Gauge(
    "makerflow_drawdown",
    "PnL high-water mark minus PnL now, in the quote asset, per risk scope.",
    ["scope"],
)
RISK_LIMIT_BREACHES = Counter(
    "makerflow_risk_limit_breaches",
    "Onsets of risk limit breaches per scope and kind of limit.",
    ["scope", "kind"],
)
LATE_EVENTS = Counter(
    "makerflow_late_events",
    "Events older than every open window of a step, counted and left out of the windows.",
    ["step"],
)
REPEATED_FILLS = Counter(
    "makerflow_repeated_fills",
    "Copies of a fill already delivered (the same trade by another path), dropped.",
    ["step"],
)
ORDERS_UNKNOWN = Counter(
    "makerflow_orders_unknown",
    "Places whose answer was lost (outcome unknown until the venue says), by how they ended.",
    ["venue", "resolution"],
)
ORDERS_IN_FLIGHT = Gauge(
    "makerflow_orders_in_flight",
    "Requests to the venue in flight now, per venue (bounded by the sink's config).",
    ["venue"],
)
VENUE_SWEEPS = Counter(
    "makerflow_venue_sweeps",
    "Reconciliations with the venue (open orders, recent fills, balances), by outcome.",
    ["venue", "outcome"],
)
RISK_GATE_REJECTS = Counter(
    "makerflow_risk_gate_rejects",
    "Orders the risk gate refused before the exchange, by market and why (halted, paused,"
    " stale, unknown: no fresh risk state heard for a covering scope).",
    ["market", "why"],
)
KILL_SWITCH_FLAT_SECONDS = Histogram(
    "makerflow_kill_switch_flat_seconds",
    "Time from a halt's breach (its event time) to the venue confirming none of our orders"
    " remain on the market.",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0),
)
KILL_SWITCH_CONFIRMED_FLAT = Gauge(
    "makerflow_kill_switch_confirmed_flat",
    "1 once the venue confirmed none of our orders remain on a halted market, 0 while not"
    " (yet) confirmed.",
    ["market"],
)
KILL_SWITCH_CANCEL_FAILED = Gauge(
    "makerflow_kill_switch_cancel_failed",
    "1 while a halted market's orders are not confirmed gone past the flatten deadline.",
    ["market"],
)
CONTROL_REFUSED = Counter(
    "makerflow_control_refused",
    "Control commands refused (unsigned, bad signature, stale, replayed), by reason.",
    ["reason"],
)
