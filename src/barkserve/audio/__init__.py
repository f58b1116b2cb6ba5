"""Audio after generation: signal steps (dsp), encoding to formats and streams (encode), files (files)."""
