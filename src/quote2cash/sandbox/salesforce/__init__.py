"""A stateful local stand-in for the Salesforce REST API, served over HTTPS.

Run it in-process (``SalesforceEmulator`` with ``await start()``/``await stop()``), in a
background thread (``run_in_thread()``), or as a process
(``python -m quote2cash.sandbox.salesforce --port N --ca-out PATH``). Clients trust the
local CA in ``ca_path``; log in at ``/services/oauth2/token`` and use the returned
``access_token`` and ``instance_url`` (simple-salesforce: ``session_id=``/``instance_url=``).

Closed Won callout (what the hub verifies)
------------------------------------------
When an Opportunity's StageName becomes "Closed Won" (on create, or on an update from
another stage) and the write commits, the emulator POSTs a JSON message to the configured
callout URL::

    {"messageId": "<uuid4, unique per message, stable across retries>",
     "eventType": "opportunity.closed_won",
     "eventTime": "2026-11-26T02:30:06.000+0000",
     "organizationId": "00D...",
     "opportunity": {"Id", "Name", "AccountId", "StageName", "Amount", "CurrencyIsoCode",
                     "CloseDate", "Pricebook2Id", "ContractId", "Type", "LastModifiedDate",
                     "SystemModstamp", and every custom field of Opportunity}}

Amounts are exact JSON numbers (never float-rounded). Headers:

* ``X-Q2C-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>``, where the HMAC key is the
  shared secret (UTF-8) and the signed message is ``f"{t}."`` (ASCII) followed by the raw
  request body bytes exactly as sent. Verify by recomputing over the received bytes, comparing
  in constant time, and rejecting timestamps older than your tolerance (5 minutes in
  ``callout.verify``).
* ``X-Q2C-Message-Id``: the message id again (deduplicate on it; retries repeat it).
* ``X-Q2C-Delivery-Attempt``: 1, 2, ...

Delivery is asynchronous; any non-2xx answer or connection error is retried up to
``callout_max_attempts`` times with exponential backoff (``callout_backoff_seconds`` x 2^n),
re-signed with a fresh timestamp each attempt. ``GET /_emulator/callouts`` lists outcomes.

Users: ``DEFAULT_USERNAME`` is the hub's integration user; ``SALES_USERNAME`` a sales rep,
to whom fields marked ``read_only_for_users`` (the hub's ids, the ERP-owned values) are read-only
(INVALID_FIELD_FOR_INSERT_UPDATE), as field-level security makes them in a real org.

Admin endpoints (no auth, loopback only): ``POST /_emulator/reset``,
``GET|PATCH /_emulator/config``, ``POST /_emulator/clock {"advance_seconds": n}``,
``POST /_emulator/sessions/expire``, ``GET /_emulator/callouts``.
"""

from .callout import SIGNATURE_HEADER, sign, verify
from .emulator import (
    DEFAULT_CLIENT_ID,
    DEFAULT_CLIENT_SECRET,
    DEFAULT_PASSWORD,
    DEFAULT_USERNAME,
    SALES_PASSWORD,
    SALES_USERNAME,
    RunningEmulator,
    SalesforceEmulator,
    run_in_thread,
)
from .schema import SchemaError

__all__ = [
    "DEFAULT_CLIENT_ID",
    "DEFAULT_CLIENT_SECRET",
    "DEFAULT_PASSWORD",
    "DEFAULT_USERNAME",
    "SALES_PASSWORD",
    "SALES_USERNAME",
    "SIGNATURE_HEADER",
    "RunningEmulator",
    "SalesforceEmulator",
    "SchemaError",
    "run_in_thread",
    "sign",
    "verify",
]
