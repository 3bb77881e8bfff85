"""The store: the schema (models, migrations), the database engine and transactions, row serialisation."""
