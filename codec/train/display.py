"""What a run shows while it trains: TensorBoard scalars and a progress bar."""

from __future__ import annotations

from pathlib import Path


class TensorBoard:
    """Scalars for TensorBoard, when it is installed; `writer` is its SummaryWriter, for the
    audio and figures a solver adds."""

    def __init__(self, writer):
        self.writer = writer

    @classmethod
    def open(cls, folder: Path) -> TensorBoard | None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            return None
        return cls(SummaryWriter(str(folder)))

    def scalars(self, step: int, record: dict) -> None:
        """Numbers as scalars ("a@b" -> "a/b"); a dict of lists {name: [v0, v1, ...]} under
        key k as k_name/0, k_name/1, ..."""
        for key, value in record.items():
            if isinstance(value, (int, float)) and key not in ("step", "time"):
                self.writer.add_scalar(key.replace("@", "/"), value, step)
            elif isinstance(value, dict):
                for name, values in value.items():
                    for index, v in enumerate(values):
                        self.writer.add_scalar(f"{key}_{name}/{index}", v, step)
        self.writer.flush()


class Progress:
    """A tqdm bar with the step logs named in `keys` and the throughput, or silence."""

    def __init__(self, total: int, start: int, enabled: bool, keys=(), rate_label: str = "/s"):
        self.start, self.bar, self.keys, self.rate_label = start, None, tuple(keys), rate_label
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, initial=start, unit="step", dynamic_ncols=True)

    def show(self, step: int, logs: dict, rate: float) -> None:
        if self.bar is not None:
            self.bar.n = step
            shown = {k: f"{v:.3g}" for k, v in logs.items() if k in self.keys}
            self.bar.set_postfix(shown | {self.rate_label: f"{rate:.1f}"}, refresh=True)

    def note(self, metrics: dict) -> None:
        if self.bar is not None and metrics:
            self.bar.write(" ".join(f"{k}={v:.3f}" for k, v in metrics.items()))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
