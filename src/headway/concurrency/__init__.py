"""Concurrency and rate limits from code: ``concurrency()`` and ``rate_limit()``.

Import the flavour you need::

    from headway.concurrency.sync import concurrency, rate_limit
    from headway.concurrency.asyncio import concurrency, rate_limit

Both are thin wrappers of one core (``_core.py``) over the Client; the slot
engine itself (grant order, leases, wake-ups) lives behind the Client.
"""
