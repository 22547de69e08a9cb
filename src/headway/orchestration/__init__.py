"""Policy modules mixed into :class:`headway.orchestrator.Orchestrator`, one idea each."""
