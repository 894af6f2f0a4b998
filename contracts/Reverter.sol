// SPDX-License-Identifier: MIT
pragma solidity ^0.8.20;

/// @title Reverter
/// @notice Every entry point reverts, so tests can exercise revert-reason decoding and
///         simulation failures on a real chain.
contract Reverter {
    error Denied(address who);

    /// @notice Revert with the caller's own reason string.
    function fail(string calldata reason) external pure {
        revert(reason);
    }

    function alwaysReverts() external pure {
        revert("Reverter: always reverts");
    }

    /// @notice Revert with the custom error `Denied(msg.sender)`.
    function deny() external view {
        revert Denied(msg.sender);
    }

    // A plain ETH transfer here must fail in simulation, like sending to a contract that refuses ether.
    receive() external payable {
        revert("Reverter: no ether accepted");
    }
}
