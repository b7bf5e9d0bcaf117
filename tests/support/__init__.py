"""Helpers every test layer shares: processes, ports and waits (`procs`)."""
