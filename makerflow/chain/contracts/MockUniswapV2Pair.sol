// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title Uniswap V2-style pair for the local chain
/// @notice Same read ABI and events as a Uniswap V2 pair (token0, token1, getReserves, Sync,
///         Swap). Tokens are sorted by address as the V2 factory does. Instead of holding
///         tokens, the owner sets the reserves (setReserves) or swaps against the constant
///         product (swapExactIn), which is what moves the price in tests and the demo.
contract MockUniswapV2Pair {
    address public immutable token0;
    address public immutable token1;
    address public immutable owner;
    uint112 private reserve0;
    uint112 private reserve1;
    uint32 private blockTimestampLast;

    event Sync(uint112 reserve0, uint112 reserve1);
    event Swap(
        address indexed sender,
        uint256 amount0In,
        uint256 amount1In,
        uint256 amount0Out,
        uint256 amount1Out,
        address indexed to
    );

    modifier onlyOwner() {
        require(msg.sender == owner, "only owner");
        _;
    }

    constructor(address tokenA, address tokenB) {
        require(tokenA != tokenB, "identical tokens");
        (token0, token1) = tokenA < tokenB ? (tokenA, tokenB) : (tokenB, tokenA);
        owner = msg.sender;
    }

    function getReserves()
        external
        view
        returns (uint112 _reserve0, uint112 _reserve1, uint32 _blockTimestampLast)
    {
        return (reserve0, reserve1, blockTimestampLast);
    }

    function setReserves(uint112 r0, uint112 r1) external onlyOwner {
        _update(r0, r1);
    }

    /// @notice Swap `amountIn` of token0 (zeroForOne) or token1 in, 0.3% fee, x*y=k.
    function swapExactIn(bool zeroForOne, uint256 amountIn) external onlyOwner {
        uint256 inWithFee = amountIn * 997;
        if (zeroForOne) {
            uint256 out = (inWithFee * reserve1) / (uint256(reserve0) * 1000 + inWithFee);
            _update(uint112(reserve0 + amountIn), uint112(reserve1 - out));
            emit Swap(msg.sender, amountIn, 0, 0, out, msg.sender);
        } else {
            uint256 out = (inWithFee * reserve0) / (uint256(reserve1) * 1000 + inWithFee);
            _update(uint112(reserve0 - out), uint112(reserve1 + amountIn));
            emit Swap(msg.sender, 0, amountIn, out, 0, msg.sender);
        }
    }

    function _update(uint256 r0, uint256 r1) private {
        require(r0 <= type(uint112).max && r1 <= type(uint112).max, "overflow");
        reserve0 = uint112(r0);
        reserve1 = uint112(r1);
        blockTimestampLast = uint32(block.timestamp);
        emit Sync(reserve0, reserve1);
    }
}
