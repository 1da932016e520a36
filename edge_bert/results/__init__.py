"""Result documents (validate, bench) as typed objects, read strictly like the manifest (schema.py)."""
