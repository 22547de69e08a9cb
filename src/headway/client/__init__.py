"""headway.client."""
