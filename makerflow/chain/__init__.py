"""A local chain for tests and the demo: the project's contracts on an in-process EVM,
served over JSON-RPC on loopback."""
