"""The persistent quota ledger: allocations, ledger nodes, reservations and usage drift.

The arithmetic lives in the pure ``quotas`` package; this package loads and locks chains,
calls it, and writes back what it returns.
"""
