"""The flow and task engines behind the SDK: runs, the batching recorder, timeouts, Dask."""
