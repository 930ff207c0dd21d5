"""Training recipes: one module per codec, each with a ``build(config)`` builder and an ``export`` hook."""
