"""Paging: tell humans about incidents the supervisor cannot fix, and when they are over.

Providers, routing and delivery only; the incidents and silences they work from are Redis
state, in `supervisor.state.incidents` and `supervisor.state.silences`. Layers, bottom up (each
module imports only those above it in this list):

* `models`               events, results, kinds, severities (the errors are in `supervisor.errors`)
* `config`               the fleet file's `[paging]` table (`parse_paging`), secrets loaded once
* `http`, `ratelimit`    one retrying POST (httpx translated here), one-per-interval spacing
* `base` + providers     `Notifier` / `RecordingNotifier`; `pagerduty`, `webhook`, `slack`
* `dispatch`             routing (pure) and `deliver(provider, event, config)` (never raises)
* `pager`                `ProviderPager`: the engine's `Pager` (`trigger`, `resolve`,
                         `silenced`, `run`, `tick`)

No Celery here: the engine wraps `ProviderPager.run` and `ProviderPager.tick` in tasks. Nothing
is re-exported: importing the package must stay as cheap as `config` alone, because every fleet
load reads the `[paging]` table while httpx (providers) and redis (incidents) are needed only to
page.
"""
