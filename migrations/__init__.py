"""The Alembic environment and revisions that own the registry's database schema.

Shipped inside the installed package so ``pip install .`` can upgrade a registry on open.
"""
