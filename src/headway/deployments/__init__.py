"""headway.deployments."""
