"""The ``donjon`` command. Each command group lives in its own module and is imported lazily."""
