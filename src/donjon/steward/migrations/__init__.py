"""Alembic migrations of the Steward's audit store (``donjon steward db upgrade``).

Adding a schema change is one file in ``versions/``: copy the newest one, give
it the next number, set ``down_revision`` to the one before, and write
``upgrade()`` with ``alembic.op``. ``donjon.steward.schema.HEAD`` follows by
itself (it asks Alembic for the head), and a Steward refuses any other.
"""
