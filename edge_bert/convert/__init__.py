"""Host-side conversion (the ``convert`` extra, needs torch and transformers): load a checkpoint, make the
golden references, run each format's export and recipes, gate every bundle before it is written, rescue a
recipe that fails, and let a device choose the recipe (``--recipe auto``).

The runner never imports this package (nor ``edge_bert.formats`` or ``edge_bert.training``);
``tests/test_boundary.py`` enforces that.
"""
