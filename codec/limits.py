"""Bounds shared by everything that reads a model or a codes file from a stranger: a model
config, a .codes header and an imported checkpoint all check against these (inclusive)."""

from codec.audio import MAX_SAMPLE_RATE, MIN_SAMPLE_RATE

SAMPLE_RATE = (MIN_SAMPLE_RATE, MAX_SAMPLE_RATE)
CHANNELS = (1, 2)
GROUPS = (1, 64)
LEVELS = (1, 1024)
CODEBOOK_SIZE = (2, 2**20)
DIMENSION = (1, 8192)
