"""Paging: tell humans about incidents the supervisor cannot fix, and when they are over.

Layers, bottom up (each module imports only those above it in this list):

* `models`, `errors`     events, results, kinds, severities; the PagingError tree
* `config`               the fleet file's `[paging]` table (`parse_paging`), secrets loaded once
* `http`, `ratelimit`    one retrying POST (httpx translated here), one-per-interval spacing
* `base` + providers     `Notifier` / `RecordingNotifier`; `pagerduty`, `webhook`, `slack`
* `dispatch`             routing (pure) and `deliver(provider, event, config)` (never raises)
* `silences`, `incidents` Redis state: one incident per dedup key, per-provider deliveries
* `pager`                `Pager`: what the engine calls (`trigger`, `resolve`, `run`, `tick`)

No Celery here: the engine wraps `Pager.run` and `Pager.tick` in tasks. Nothing is re-exported:
importing the package must stay as cheap as `config` alone, because every fleet load reads the
`[paging]` table while httpx (providers) and redis (incidents) are needed only to page.
"""
