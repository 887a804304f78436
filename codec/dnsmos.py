"""DNSMOS: non-intrusive perceptual scores that no loss in this toolkit trains toward.

    audio (c, t) at any rate -> mono, 16 kHz -> DNSMOS P.835 (SIG, BAK, OVRL) and P.808 MOS

Microsoft's DNS Challenge models, run by onnxruntime through the `speechmos` package, which
ships the ONNX files inside its wheel (`pip install codec[eval]`). Scores are 1 (bad) to 5
(excellent); audio shorter than the models' 9.01 s window is repeated to fill it, longer audio
is scored in 9.01 s windows a second apart and averaged, as the DNS Challenge's script does.
"""

from __future__ import annotations

from pathlib import Path

import torch

from codec.audio import resample

RATE = 16000
KEYS = ("dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808")


class DNSMOSUnavailable(ImportError):
    pass


class DNSMOS:
    """(c, t) audio at `rate` -> {"dnsmos_sig", "dnsmos_bak", "dnsmos_ovrl", "dnsmos_p808"}."""

    def __init__(self):
        try:
            import speechmos
            from speechmos.dnsmos import DNSMOS as Scorer
        except ImportError as err:
            raise DNSMOSUnavailable(
                f"the speechmos package or what it needs is not installed ({err.name}; "
                "pip install speechmos onnxruntime librosa)"
            ) from err
        models = Path(speechmos.__file__).parent / "dnsmos_models"
        self._scorer = Scorer(str(models / "sig_bak_ovr.onnx"), str(models / "model_v8.onnx"))

    def __call__(self, wav: torch.Tensor, rate: int) -> dict[str, float]:
        mono = resample(wav.float().mean(0, keepdim=True), rate, RATE)[0].clamp(-1, 1)
        if mono.numel() == 0:
            raise ValueError("DNSMOS of an empty signal")
        scores = self._scorer(mono.numpy(), RATE, False)
        values = (scores["sig_mos"], scores["bak_mos"], scores["ovrl_mos"], scores["p808_mos"])
        return {key: float(value) for key, value in zip(KEYS, values)}
