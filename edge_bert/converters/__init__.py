"""Host-side conversion (the ``convert`` extra): needs torch and transformers.

Lives inside the ``edge_bert`` package rather than as a top-level ``converters`` package because a
top-level import name that generic would collide with other projects in site-packages. The runner
never imports it; ``tests/test_boundary.py`` enforces that.
"""
