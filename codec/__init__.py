"""Neural audio codec toolkit: SEANet encoder/decoder around a grouped residual VQ."""

__version__ = "0.1.0"
