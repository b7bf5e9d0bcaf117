"""Recovery: scans that start attempts, the steps of an attempt, the engine they share, and the
one paging handle (`pager`). `runtime` builds an engine from settings and runs `heal` inline.
"""
