// SPDX-License-Identifier: MIT
pragma solidity 0.8.28;

/// @title Chainlink AggregatorV3-style price feed for the local chain
/// @notice Same read ABI and events as a Chainlink aggregator proxy (decimals, description,
///         version, latestRoundData, getRoundData, AnswerUpdated, NewRound). Answers are set by
///         the owner, which lets tests move the price and age a round.
contract MockAggregatorV3 {
    struct Round {
        int256 answer;
        uint256 startedAt;
        uint256 updatedAt;
        uint80 answeredInRound;
    }

    uint8 public immutable decimals;
    string public description;
    uint256 public constant version = 4;
    address public immutable owner;
    uint80 public latestRound;
    mapping(uint80 => Round) private rounds;

    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event NewRound(uint256 indexed roundId, address indexed startedBy, uint256 startedAt);

    modifier onlyOwner() {
        require(msg.sender == owner, "only owner");
        _;
    }

    constructor(uint8 decimals_, string memory description_, int256 initialAnswer) {
        decimals = decimals_;
        description = description_;
        owner = msg.sender;
        _newRound(initialAnswer, block.timestamp, block.timestamp);
    }

    /// @notice A new round answered now.
    function updateAnswer(int256 answer) external onlyOwner {
        _newRound(answer, block.timestamp, block.timestamp);
    }

    /// @notice A new round with explicit times, to test stale rounds.
    function updateRoundData(int256 answer, uint256 updatedAt, uint256 startedAt)
        external
        onlyOwner
    {
        _newRound(answer, updatedAt, startedAt);
    }

    function latestRoundData()
        external
        view
        returns (
            uint80 roundId,
            int256 answer,
            uint256 startedAt,
            uint256 updatedAt,
            uint80 answeredInRound
        )
    {
        return getRoundData(latestRound);
    }

    function getRoundData(uint80 roundId_)
        public
        view
        returns (
            uint80 roundId,
            int256 answer,
            uint256 startedAt,
            uint256 updatedAt,
            uint80 answeredInRound
        )
    {
        Round memory r = rounds[roundId_];
        require(r.updatedAt > 0, "No data present");
        return (roundId_, r.answer, r.startedAt, r.updatedAt, r.answeredInRound);
    }

    function latestAnswer() external view returns (int256) {
        return rounds[latestRound].answer;
    }

    function latestTimestamp() external view returns (uint256) {
        return rounds[latestRound].updatedAt;
    }

    function _newRound(int256 answer, uint256 updatedAt, uint256 startedAt) private {
        latestRound += 1;
        rounds[latestRound] = Round(answer, startedAt, updatedAt, latestRound);
        emit NewRound(latestRound, msg.sender, startedAt);
        emit AnswerUpdated(answer, latestRound, updatedAt);
    }
}
