"""headway.server."""
