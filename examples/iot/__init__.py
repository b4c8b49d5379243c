"""The IoT example: devices and sites as DNA actors behind a Starlette web app.

``python -m examples.iot run`` runs everything in one process on SQLite;
``python -m examples.iot cluster`` runs two ``dna node`` processes plus the web
process as a client node. See ``examples/iot/README.md``.
"""
