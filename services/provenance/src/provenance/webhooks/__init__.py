"""Webhooks: when a job that came with a ``callback_url`` ends, POST its final state there.

- **Durable.** The terminal status and the queue entry meet in Redis: after the status recorder
  applies a batch, every terminal job with a callback URL is enqueued by one Lua script that does
  it once per job (a redelivered record enqueues nothing twice). The queue is a sorted set scored
  by due time, so a restart of provenance drops nothing; a delivery in flight is *leased* and comes
  due again if its process dies, so delivery is at least once (receivers dedupe on
  ``X-Penguin12-Delivery``).
- **Never blocks the pipeline, nor one client another.** Deliveries run on a thread pool beside
  the status consumer; each receiver (scheme, host, port) gets at most
  ``PENGUIN12_WEBHOOK_PER_RECEIVER`` of its threads, and its other due deliveries wait in the
  queue meanwhile, so a slow receiver delays only its own webhooks.
- **Bounded.** Each attempt has one total deadline (``PENGUIN12_WEBHOOK_TIMEOUT_S``: connect,
  TLS, request, headers, everything), and at most `MAX_RESPONSE_BYTES` of the answer are read
  (only the status code matters); the rest is dropped with the connection.
- **Signed per job.** ``X-Penguin12-Signature: t=<unix seconds>,v2=<hex HMAC-SHA256(job secret,
  t + "." + delivery id + "." + body)>``. The job secret is derived from
  ``PENGUIN12_WEBHOOK_SECRET`` and the request id (`penguin12.security.webhook_secret`) and handed
  to the submitter only, in the 202 answer: one client's receiver cannot forge another's webhooks.
  Receivers check it as `penguin12.security.verify_webhook` does.
- **Retried** with exponential backoff (and jitter) on a network error, a timeout or any non-2xx
  answer, up to ``PENGUIN12_WEBHOOK_MAX_ATTEMPTS`` attempts. Redirects are not followed.
- **Once per run.** A job re-opened by ``dlq replay`` gets its final state delivered again when
  the new run ends (a new delivery id; the attempt count starts again).
- **Safe.** Every connection goes through `penguin12.ssrf`: no private, loopback or link-local
  targets unless ``PENGUIN12_ALLOW_PRIVATE_URLS=true``.
- **Visible.** Every attempt is logged per job: `GET /v1/status/{id}/deliveries`.

The package's modules, in the order a webhook meets them: `queue` (the Redis side, and the
trigger that enqueues after each status batch), `dispatcher` (the thread pool, per-receiver
limits, retries), `transport` (the guarded connections under one deadline per attempt) and
`routes` (the delivery log).
"""
