"""headway.worker."""
