# _vae.pxi - VAE decode bindings (included by _engine.pyx). Placeholder.
