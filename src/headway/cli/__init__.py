"""headway.cli."""
