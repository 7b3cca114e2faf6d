"""Prefect tasks: thin async wrappers over ``kiemdiem`` step functions.

Each task loads what it needs, runs one batch step for a whole phase or campaign, and
returns counts or plain dicts, never ORM objects. Caching is off: every step is idempotent
and must see the database as it is now.
"""
