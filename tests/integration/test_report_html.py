"""The HTML report in a real browser: headless Chromium (Debian's ``chromium``, installed by
``make system-deps``) opens report.html from disk, the page's own script checks that every
plot's series were laid out, and Chromium's DOM dump and screenshot show the result.

Chromium must be on PATH; these tests fail, not skip, without it.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from makerflow.reports.html import PLOTS
from makerflow.reports.writer import write_report
from tests.report_support import cancel, fill, ladder, place, tick, write_run

pytestmark = pytest.mark.slow


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("chromium is not on PATH: run `make system-deps` (Debian package chromium)")
    return path


def browse(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [
        chromium(),
        "--headless",
        "--no-sandbox",  # the tests run as root
        "--disable-gpu",
        "--no-first-run",
        f"--user-data-dir={profile}",
        # Nothing may leave the machine: every host name fails to resolve.
        "--host-resolver-rules=MAP * ~NOTFOUND",
        "--window-size=1280,2600",
        "--virtual-time-budget=5000",
        *args,
        page.as_uri(),
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=90, check=False)


def random_walk_run(run_dir: Path, seed: int = 3, seconds: int = 120) -> Path:
    """Two minutes of a quoted market: ticks every 0.5 s, quotes each second, fills."""
    rng = random.Random(seed)
    mid, ticks, ladders, fills, intents = 100.0, [], [], [], []
    for i in range(seconds * 2):
        mid += rng.choice((-0.05, 0.05))
        ticks.append(tick(i / 2, round(mid, 2), half=0.05))
        if i % 2 == 0:
            ladders.append(ladder(i / 2 + 0.01, [round(mid - 0.1, 2)], [round(mid + 0.1, 2)]))
            n = i // 2
            intents += [place(i / 2 + 0.02, f"b{n}", "buy", mid - 0.1)]
            intents += [place(i / 2 + 0.02, f"a{n}", "sell", mid + 0.1)]
            if rng.random() < 0.2:
                side = rng.choice(("buy", "sell"))
                price = round(mid - 0.1 if side == "buy" else mid + 0.1, 2)
                coid = f"{'b' if side == 'buy' else 'a'}{n}"
                fills.append(fill(i / 2 + 0.3, side, 1.0, price, 0.01, f"t{n}", coid))
            intents += [cancel(i / 2 + 0.9, f"b{n}"), cancel(i / 2 + 0.9, f"a{n}")]
    return write_run(
        run_dir, {"ticks": ticks, "ladders": ladders, "fills": fills, "intents": intents}
    )


def render_check(dom: str) -> dict:
    found = re.search(r'<pre id="render-check">(.*?)</pre>', dom, re.S)
    assert found, "the page has no render-check element"
    text = found.group(1).replace("&quot;", '"')
    assert text.startswith("{"), f"the page's script did not run: {text!r}"
    return json.loads(text)


def test_every_plot_renders_in_chromium(tmp_path):
    run = random_walk_run(tmp_path / "run")
    written = write_report(run)
    assert written.html is not None and written.html.exists()
    assert written.report.headline()["binance:BTC/USDT"]["fills"] > 5

    out = browse(written.html, tmp_path / "profile", "--dump-dom")
    assert out.returncode == 0, out.stderr[-2000:]
    check = render_check(out.stdout)
    assert check["plots"] == len(PLOTS) and check["rendered"] == len(PLOTS), check
    by_plot = {f["plot"]: f for f in check["figures"]}
    assert set(by_plot) == set(PLOTS)
    # mid, our bid, our ask, buy fills, sell fills; total, realized, unrealized, fees, drawdown
    expected_series = {"price": 5, "inventory": 1, "pnl": 5, "markouts": 3}
    for name, n in expected_series.items():
        fig = by_plot[name]
        assert fig["series"] == n and fig["drawn"] == n, fig
        assert fig["width"] > 400 and fig["height"] > 150, fig
    assert check["resources"] == [], "the report loaded something besides itself"
    assert 'data-plots-rendered="4/4"' in out.stdout


def test_screenshot_shows_the_plots(tmp_path):
    from matplotlib.image import imread

    written = write_report(random_walk_run(tmp_path / "run", seed=9))
    assert written.html is not None
    shot = tmp_path / "report.png"
    out = browse(written.html, tmp_path / "profile", f"--screenshot={shot}")
    assert out.returncode == 0 and shot.exists(), out.stderr[-2000:]
    pixels = imread(str(shot))
    assert pixels.shape[0] >= 2000 and pixels.shape[1] >= 1200
    ink = (pixels[..., :3].mean(axis=2) < 0.9).mean()  # share of non-white pixels
    assert ink > 0.02, f"the screenshot is nearly blank ({ink:.3%} ink)"
    blue = (pixels[..., 2] > 0.6) & (pixels[..., 0] < 0.2)  # the PnL and inventory lines
    assert blue.sum() > 500


def test_a_run_without_fills_says_so_and_still_draws_the_market(tmp_path):
    run = write_run(tmp_path / "run", {"ticks": [tick(i, 100 + i % 3) for i in range(30)]})
    written = write_report(run)
    assert written.html is not None
    check = render_check(browse(written.html, tmp_path / "profile", "--dump-dom").stdout)
    by_plot = {f["plot"]: f for f in check["figures"]}
    assert by_plot["price"]["rendered"] and not by_plot["price"]["empty"]
    assert by_plot["price"]["drawn"] == 1  # the mid
    for name in ("inventory", "pnl", "markouts"):
        assert by_plot[name]["empty"] and by_plot[name]["rendered"], by_plot[name]


def test_the_same_run_gives_the_same_bytes(tmp_path):
    run = random_walk_run(tmp_path / "run", seed=4)
    first = write_report(run, tmp_path / "a")
    second = write_report(run, tmp_path / "b")
    assert first.html is not None and second.html is not None
    assert first.html.read_bytes() == second.html.read_bytes()
    for stem, path in first.parquet.items():
        assert path.read_bytes() == second.parquet[stem].read_bytes(), stem


def test_a_missing_run_directory_is_an_error_that_creates_nothing(tmp_path):
    from makerflow.cli import main

    missing = tmp_path / "no-such-run"
    with pytest.raises(FileNotFoundError, match="no run directory"):
        write_report(missing)
    assert main(["report", str(missing)]) == 2
    assert not missing.exists()
