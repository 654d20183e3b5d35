// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title Uniswap V3-style pool for the local chain
/// @notice Same read ABI and Swap event as a Uniswap V3 pool (token0, token1, fee,
///         tickSpacing, liquidity, slot0). Tokens are sorted by address as the V3 factory
///         does. The owner sets the price (setPrice), emitting Swap as a real swap would;
///         the tick is passed in because TickMath is not needed to read prices.
contract MockUniswapV3Pool {
    struct Slot0 {
        uint160 sqrtPriceX96;
        int24 tick;
        uint16 observationIndex;
        uint16 observationCardinality;
        uint16 observationCardinalityNext;
        uint8 feeProtocol;
        bool unlocked;
    }

    address public immutable token0;
    address public immutable token1;
    uint24 public immutable fee;
    int24 public immutable tickSpacing;
    address public immutable owner;
    uint128 public liquidity;
    Slot0 public slot0;

    event Initialize(uint160 sqrtPriceX96, int24 tick);
    event Swap(
        address indexed sender,
        address indexed recipient,
        int256 amount0,
        int256 amount1,
        uint160 sqrtPriceX96,
        uint128 liquidity,
        int24 tick
    );

    modifier onlyOwner() {
        require(msg.sender == owner, "only owner");
        _;
    }

    constructor(address tokenA, address tokenB, uint24 fee_, int24 tickSpacing_) {
        require(tokenA != tokenB, "identical tokens");
        (token0, token1) = tokenA < tokenB ? (tokenA, tokenB) : (tokenB, tokenA);
        fee = fee_;
        tickSpacing = tickSpacing_;
        owner = msg.sender;
    }

    function initialize(uint160 sqrtPriceX96, int24 tick, uint128 liquidity_) external onlyOwner {
        require(slot0.sqrtPriceX96 == 0, "already initialized");
        slot0 = Slot0(sqrtPriceX96, tick, 0, 1, 1, 0, true);
        liquidity = liquidity_;
        emit Initialize(sqrtPriceX96, tick);
    }

    function setPrice(uint160 sqrtPriceX96, int24 tick, uint128 liquidity_) external onlyOwner {
        require(slot0.sqrtPriceX96 != 0, "not initialized");
        slot0.sqrtPriceX96 = sqrtPriceX96;
        slot0.tick = tick;
        liquidity = liquidity_;
        emit Swap(msg.sender, msg.sender, 0, 0, sqrtPriceX96, liquidity_, tick);
    }
}
