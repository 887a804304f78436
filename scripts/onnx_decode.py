"""Decode a .codes file with an exported model, using numpy, soundfile and onnxruntime only
(no torch, no codec package): what deploying the decoder takes.

    codec export speech16k -o speech16k-onnx
    codec encode speech.wav -m speech16k -o speech.codes
    python scripts/onnx_decode.py speech.codes speech16k-onnx -o decoded.wav

The .codes layout is docs/codes-format.md's: magic, version, a JSON header, the codes
bit-packed most significant bit first in (frame, level, group) order, and a CRC32. The whole
file is decoded in one pass of decoder.onnx. Models that normalise loudness or cut segments
(EnCodec 48 kHz) need the codec package's own `codec decode`.
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import onnxruntime as ort
import soundfile as sf

PREFIX = struct.Struct("<6sHI")  # magic, version, header length
MAX_HEADER = 1 << 20


def read_codes(path: Path) -> tuple[np.ndarray, dict]:
    """codes (groups, levels, frames) int64 and the header of a .codes file."""
    data = path.read_bytes()
    if len(data) < PREFIX.size + 4:
        raise ValueError("truncated (shorter than the fixed fields)")
    magic, version, size = PREFIX.unpack_from(data)
    if magic != b"CODECS" or version != 1:
        raise ValueError(f"not a version 1 .codes file (magic {magic!r}, version {version})")
    if size > MAX_HEADER or PREFIX.size + size + 4 > len(data):
        raise ValueError("truncated header")
    body, (crc,) = data[:-4], struct.unpack("<I", data[-4:])
    if zlib.crc32(body) != crc:
        raise ValueError("checksum mismatch (damaged or truncated)")
    header = json.loads(data[PREFIX.size : PREFIX.size + size])
    g, q, f = header["groups"], header["levels"], header["frames"]
    bits = max(1, int(np.ceil(np.log2(header["codebook_size"]))))
    payload = np.frombuffer(body, np.uint8, offset=PREFIX.size + size)
    if len(payload) != -(-g * q * f * bits // 8):
        raise ValueError("payload size does not match the header")
    flat = np.unpackbits(payload)[: g * q * f * bits].reshape(-1, bits).astype(np.int64)
    values = flat @ (1 << np.arange(bits - 1, -1, -1, dtype=np.int64))
    return values.reshape(f, q, g).transpose(2, 1, 0), header


def decode(codes_path: Path, model_dir: Path, output: Path, threads: int = 1) -> None:
    codes, header = read_codes(codes_path)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    made_by = (header["model_id"], header["weights_hash"].lower())
    if made_by != (manifest["model_id"], manifest["weights_hash"].lower()):
        raise ValueError(
            f"made by model {made_by[0]} ({made_by[1]}), not by the exported "
            f"{manifest['model_id']} ({manifest['weights_hash']})"
        )
    if header.get("gains") or manifest.get("segment"):
        raise ValueError("loudness gains or segments: decode with `codec decode`")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    graph = model_dir / manifest["graphs"]["decoder"]["file"]
    try:
        decoder = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime's own exception types
        raise ValueError(
            f"{graph}: onnxruntime cannot load it ({str(err).splitlines()[0]})"
        ) from None
    audio = decoder.run(None, {"codes": codes[None]})[0][0, :, : header["length"]]
    sf.write(str(output), audio.T, manifest["sample_rate"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("codes", type=Path, help="a .codes file")
    parser.add_argument("model", type=Path, help="a folder written by `codec export`")
    parser.add_argument("-o", "--output", type=Path, required=True, help="output .wav")
    args = parser.parse_args(argv)
    try:
        decode(args.codes, args.model, args.output)
    except (OSError, ValueError, KeyError) as err:
        print(f"error: {args.codes}: {err}", file=sys.stderr)
        return 1
    print(f"decoded {args.codes} to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
