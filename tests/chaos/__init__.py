"""Chaos and security suite with counted outcomes (issue 7).

`pytest -m integration tests/chaos` runs the bounded size; `python -m tests.chaos --size full`
runs the full size and prints the table that CHAOS.md records.
"""
