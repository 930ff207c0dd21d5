"""``Progress``: the loop counters the trainer exposes as ``trainer.progress``.

Callbacks and modules read these (never the trainer's private state):

- ``global_step``: optimizer steps so far. Automatic optimisation: one per ``accumulate_grad_batches``
  batches (several optimizers sharing one loss step together and count once). Manual optimisation: every
  ``opt.step()`` call counts, as in Lightning (a GAN stepping G and D per batch advances it by 2).
- ``epoch``: the current epoch (0-based); ``batch_in_epoch``: batches of it already consumed;
- ``total_batches``: training batches since the run began (kept across resumes), what an int
  ``val_check_interval`` counts;
- ``step_at_batch_start``: ``global_step`` when the current batch began, so a callback can tell whether
  (and past which multiples) this batch stepped: ``stepped_this_batch``, ``crossed(n)``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Progress:
    global_step: int = 0
    epoch: int = 0
    batch_in_epoch: int = 0
    total_batches: int = 0
    step_at_batch_start: int = 0

    @property
    def stepped_this_batch(self) -> bool:
        """True once the current (or just finished) batch made at least one optimizer step."""
        return self.global_step > self.step_at_batch_start

    def crossed(self, every: int | None) -> bool:
        """True when this batch's optimizer steps reached a multiple of ``every`` (a step interval).

        Equals ``stepped_this_batch and global_step % every == 0`` when a batch makes one step, and
        still fires once when a manual-optimisation batch makes several.
        """
        if not every or every < 1:
            return False
        return self.global_step // every > self.step_at_batch_start // every

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def reset(self) -> None:
        self.global_step = self.epoch = self.batch_in_epoch = self.total_batches = 0
        self.step_at_batch_start = 0


__all__ = ["Progress"]
