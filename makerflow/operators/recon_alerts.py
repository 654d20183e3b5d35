"""The alerts reconciliation reports raise: a BREAK, and the all-clear of an amended one."""

from __future__ import annotations

from typing import Literal

from makerflow.schemas.events import Alert, ReconReport
from makerflow.schemas.scopes import account_scope

BREAK_ALERT = "BalanceReconciliationBreak"
RESOLVED_ALERT = "BalanceReconciliationResolved"


def report_alert(report: ReconReport, previous: Literal["OK", "BREAK"] | None) -> Alert | None:
    """The alert a report raises: every BREAK (a new version too), and the all-clear when an
    amendment turns a BREAK into OK. ``labels["previous_status"]`` says whether it is new."""
    labels = {
        "account": report.account,
        "asset": report.asset,
        "window_start": str(report.window_start),
        "window_end": str(report.window_end),
        "version": str(report.version),
        "previous_status": previous or "none",
    }
    scope = account_scope(report.account)
    if report.status == "BREAK":
        return Alert(
            ts=report.ts,
            name=BREAK_ALERT,
            severity="critical",
            scope=scope,
            message=f"{report.account}:{report.asset} window {report.window_start}"
            f" v{report.version}: {report.reason}",
            labels=labels,
        )
    if previous == "BREAK":
        return Alert(
            ts=report.ts,
            name=RESOLVED_ALERT,
            severity="info",
            scope=scope,
            message=f"{report.account}:{report.asset} window {report.window_start}"
            f" v{report.version} is OK after amendment: {report.reason}",
            labels=labels,
        )
    return None


def is_new_break(alert: Alert) -> bool:
    """Whether ``alert`` is a window turning into a BREAK (what the breaks metric counts)."""
    return alert.name == BREAK_ALERT and alert.labels.get("previous_status") != "BREAK"
