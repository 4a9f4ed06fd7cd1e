"""Webhooks by the Standard Webhooks 1.0 specification: durable events, signed deliveries.

- ``events``: what happened, written in the same transaction as the change (by
  ``service.subscriptions`` and the imports), with one delivery row per endpoint that
  wants it.
- ``delivery``: the worker's step that sends due deliveries, retries with backoff and
  jitter for up to three days, and pauses or disables endpoints that keep failing.
- ``endpoints``: what the admin pages, the admin API and the CLI do with endpoints.
- ``signing`` and ``targets``: the signature headers, and which URLs may be called.
"""
