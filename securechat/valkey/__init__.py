"""Rooms kept in Valkey (or Redis >= 7): ``serve --valkey URL`` instead of SQLite.

``url`` parses the URL and makes the client, ``keys`` names a room's keys, ``scripts``
holds the Lua that changes a room atomically, and ``storage`` is the ``Storage``.
"""
