"""Analytics over the stored data: track playback, trips and stops, vehicle reports.

Plain functions over a `cloud.store.db.Conn`; the API's routes (cloud/api/routes/tracks.py,
reports.py) call them. Heavy lifting happens in PostgreSQL (window functions) or in numpy on
packed columns, never row by row in Python.
"""
