"""Prefect's tag-based v1 API: ``concurrency(names, task_run_id, timeout_seconds)``.

::

    from headway.concurrency.v1.sync import concurrency
    from headway.concurrency.v1.asyncio import concurrency

``names`` are task tags: tag ``db`` is limited by headway's tag limit ``tag:db``
(``headway concurrency-limit create db 2``), the same limit the task engine
applies to tagged task runs. The slots are held by a lease of kind
``task_run`` with ``task_run_id`` as its holder, so ``headway why`` and
``gcl inspect tag:db`` name the task run. A tag without a limit takes nothing
and warns nothing, as in Prefect; no names at all run the block unlimited.
Both flavours wrap :mod:`headway.concurrency.v1._tags`.
"""
