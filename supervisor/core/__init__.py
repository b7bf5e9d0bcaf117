"""The pure decision core: no I/O, no clocks of its own, time passed in (import-linter enforced)."""
