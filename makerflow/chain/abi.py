"""The ABIs of the project's contracts, from the committed artifacts (no compiler at run time).

The contracts have the same ABI as the real Uniswap V2 pair, Uniswap V3 pool, Chainlink
aggregator and ERC-20 for every function and event the sources use, so these ABIs read
mainnet contracts as well as the local chain's.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
CONTRACTS = Path(__file__).resolve().parent / "contracts"

ERC20 = "TestERC20"
UNISWAP_V2_PAIR = "MockUniswapV2Pair"
UNISWAP_V3_POOL = "MockUniswapV3Pool"
AGGREGATOR_V3 = "MockAggregatorV3"


@cache
def load_artifact(name: str) -> dict[str, Any]:
    """The compiled ABI and bytecode of ``contracts/<name>.sol``."""
    path = ARTIFACTS / f"{name}.json"
    if not path.exists():
        raise FileNotFoundError(
            f"no compiled artifact {path}; run makerflow/chain/build_contracts.sh"
        )
    artifact: dict[str, Any] = json.loads(path.read_text())
    return artifact


def abi_of(name: str) -> list[dict[str, Any]]:
    """The ABI of one of the project's contracts."""
    abi: list[dict[str, Any]] = load_artifact(name)["abi"]
    return abi
