"""The ranges the toolkit accepts, in one place: whatever checks a sample rate, a channel
count or a quantizer shape (the .codes header, the command line, the audio reader, the model
config) takes its bounds from here, so every model that can be built can be stored, and every
.codes file that reads describes a model that can be built.

Wide enough for every model the toolkit builds or imports: EnCodec 24 kHz (mono, 32 levels x
1024 codes) and 48 kHz (stereo, 16 x 1024), DAC 16/24/44 kHz (12/32/9 levels x 1024),
HiFi-Codec (2 groups x 2 levels x 1024 at 16 kHz). The upper bounds also keep a hostile
config.json or .codes header from asking the loader for unbounded memory.
"""

from __future__ import annotations

# Hz of the audio a model codes and of the files it reads and writes
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 1000, 384_000

# a model is mono or stereo (audio with other channel counts is mapped to those, or refused)
MIN_CHANNELS, MAX_CHANNELS = 1, 2

# quantizer shape: groups x levels codebooks of codebook_size codes each
MIN_GROUPS, MAX_GROUPS = 1, 64
MIN_LEVELS, MAX_LEVELS = 1, 1024
MIN_CODEBOOK_SIZE, MAX_CODEBOOK_SIZE = 2, 1 << 20  # codes of at most 20 bits

# a model's latent size (the quantizer's input)
MIN_DIMENSION, MAX_DIMENSION = 1, 8192
