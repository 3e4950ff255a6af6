"""The lender's HTTP API (FastAPI): devices, events, commands, keys, audit; docs/api.md."""
