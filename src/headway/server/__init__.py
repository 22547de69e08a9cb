"""The headway server: FastAPI routes over the Orchestrator (``headway server start``).

Importing this package imports nothing heavy; FastAPI and uvicorn load with
:mod:`headway.server.app`, only when a server is started.
"""
