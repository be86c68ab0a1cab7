"""One module per schema revision, in order: 0001 is the schema before Alembic."""
