"""headway.concurrency."""
