# _textenc.pxi - text encoder bindings (included by _engine.pyx). Placeholder.
