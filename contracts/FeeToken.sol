// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title FeeToken
/// @notice A fee-on-transfer ERC-20 for tests: every transfer sends `feeBps` of the amount to the
/// collector, so the recipient receives less than the sender pays. The balance-change preview must
/// show it and warn (unexpected_asset_movement). Anyone may mint: it is worthless by design.
contract FeeToken {
    string public name;
    string public symbol;
    uint8 public immutable decimals;
    uint256 public totalSupply;
    address public immutable collector;
    uint256 public feeBps;
    bool public paused;

    mapping(address => uint256) public balanceOf;

    event Transfer(address indexed from, address indexed to, uint256 value);

    constructor(string memory name_, string memory symbol_, uint8 decimals_, address collector_, uint256 feeBps_) {
        name = name_;
        symbol = symbol_;
        decimals = decimals_;
        collector = collector_;
        feeBps = feeBps_;
    }

    function transfer(address to, uint256 amount) external returns (bool) {
        require(!paused, "FeeToken: paused");
        require(to != address(0), "ERC20: transfer to the zero address");
        uint256 balance = balanceOf[msg.sender];
        require(balance >= amount, "ERC20: transfer amount exceeds balance");
        uint256 fee = (amount * feeBps) / 10_000;
        unchecked {
            balanceOf[msg.sender] = balance - amount;
            balanceOf[to] += amount - fee;
            balanceOf[collector] += fee;
        }
        emit Transfer(msg.sender, to, amount - fee);
        emit Transfer(msg.sender, collector, fee);
        return true;
    }

    /// @notice Change the fee: lets a test change what a transfer does between card and signing.
    function setFee(uint256 feeBps_) external {
        require(feeBps_ <= 10_000, "FeeToken: fee above 100%");
        feeBps = feeBps_;
    }

    /// @notice Stop every transfer: lets a test change a token's behaviour between card and signing.
    function setPaused(bool paused_) external {
        paused = paused_;
    }

    function mint(address to, uint256 amount) external {
        totalSupply += amount;
        unchecked {
            balanceOf[to] += amount;
        }
        emit Transfer(address(0), to, amount);
    }
}
