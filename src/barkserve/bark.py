"""Bark's fixed facts: rates, vocabularies and limits every Bark checkpoint shares.

The engine reads the checkpoint's own values (`engine.inputs.BarkGeometry`); these constants are for
code that runs without a loaded model (option checks, voice files, cloning, test checkpoints).
This module imports nothing from barkserve, so any module can import it.
"""

# Semantic tokens per second of speech.
SEMANTIC_RATE_HZ = 49.9
# EnCodec frames per second at 24 kHz (a hop of 320 samples); coarse and fine tokens are frames.
CODEC_FRAME_RATE_HZ = 75
# Samples per second of the audio Bark's codec makes.
SAMPLE_RATE = 24_000
# Real semantic tokens are 0..9,999; the end-of-speech id is 10,000 and padding lies above it.
SEMANTIC_VOCAB = 10_000
# Codes per EnCodec codebook (0..1,023).
CODEBOOK_SIZE = 1024
# Codebooks the coarse stage makes (the first two of EnCodec's, at 6 kbps).
N_COARSE = 2
# Codebooks of the fine stage's output, which the codec decodes (EnCodec 24 kHz at 6 kbps).
N_FINE = 8
# Text tokens the semantic stage reads in one generation.
MAX_TEXT_TOKENS = 256
# Semantic tokens one generation makes at most (~15.4 s of speech).
MAX_SEMANTIC_TOKENS = 768
