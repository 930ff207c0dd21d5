"""Tiny modules and data for the trainer tests (importable, so spawned workers can use them)."""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from vqcodec.train import TrainingModule

IN_DIM = 8


def regression_data(n: int = 64, seed: int = 0) -> TensorDataset:
    """x (n, 8) ~ N(0, 1), y (n, 1) = a fixed linear function of x plus a little noise."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, IN_DIM, generator=g)
    w = torch.linspace(-1.0, 1.0, IN_DIM).unsqueeze(1)
    y = x @ w + 0.05 * torch.randn(n, 1, generator=g)
    return TensorDataset(x, y)


def loaders(
    batch_size: int = 8, n: int = 64, shuffle: bool = True, val: int = 16
) -> tuple[DataLoader, DataLoader]:
    data = regression_data(n)
    val_data = regression_data(val, seed=1)
    return (
        DataLoader(data, batch_size=batch_size, shuffle=shuffle),
        DataLoader(val_data, batch_size=batch_size),
    )


class Regression(TrainingModule):
    """MLP regression; ``noise`` and ``dropout`` add randomness (for exact-resume tests); ``quantizer``
    puts a VectorQuantizer (EMA codebook) on the hidden layer."""

    def __init__(
        self,
        hidden: int = 16,
        *,
        lr: float = 0.05,
        dropout: float = 0.0,
        noise: float = 0.0,
        quantizer: bool | str = False,
        optimizer: str = "adam",
        scheduler: bool = False,
        log_rank: bool = False,
    ):
        super().__init__()
        self.encoder = nn.Sequential(nn.Linear(IN_DIM, hidden), nn.Tanh(), nn.Dropout(dropout))
        self.head = nn.Linear(hidden, 1)
        self.quantizer = None
        if quantizer == "rvq":  # k-means init, dead-code revival, dropout: every collective path
            from vqcodec.quantize import ResidualVQ

            self.quantizer = ResidualVQ(
                hidden,
                2,
                16,
                kmeans_init=True,
                kmeans_iters=3,
                threshold_ema_dead_code=1.0,
                quantize_dropout=True,
                channel_first=False,
                decay=0.8,
            )
        elif quantizer:
            from vqcodec.quantize import VectorQuantizer

            self.quantizer = VectorQuantizer(hidden, 16, decay=0.8, channel_first=False)
        self.lr = lr
        self.noise = noise
        self.optimizer_name = optimizer
        self.scheduler = scheduler
        self.log_rank = log_rank

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.encoder(x)
        extra = h.new_zeros(())
        if self.quantizer is not None:
            out = self.quantizer(h)
            h = out.quantized
            extra = out.total_loss
        return self.head(h), extra

    def training_step(self, batch, batch_idx):
        x, y = batch
        if self.noise:
            x = x + self.noise * torch.randn_like(x)
        prediction, extra = self(x)
        mse = torch.mean((prediction.float() - y) ** 2)
        self.log("train/mse", mse.detach(), prog_bar=True)
        if self.log_rank:
            self.log("rank_mean", float(self.trainer.rank))
            self.log("rank_max", float(self.trainer.rank), reduce="max")
        return mse + extra

    def validation_step(self, batch, batch_idx):
        x, y = batch
        prediction, _ = self(x)
        self.log("val/mse", torch.mean((prediction.float() - y) ** 2))

    def test_step(self, batch, batch_idx):
        x, y = batch
        prediction, _ = self(x)
        self.log("test/mae", torch.mean((prediction.float() - y).abs()))

    def configure_optimizers(self):
        if self.optimizer_name == "sgd":
            optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        else:
            optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        if not self.scheduler:
            return optimizer
        scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class TwoPart(TrainingModule):
    """Two sub-networks with their own optimizers and clipping settings (automatic mode, shared loss)."""

    def __init__(self, clip_a: float | None = None, clip_b: float | None = None, algo_b: str = "value"):
        super().__init__()
        self.a = nn.Linear(IN_DIM, 8)
        self.b = nn.Linear(8, 1)
        self.clip_a, self.clip_b, self.algo_b = clip_a, clip_b, algo_b

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.mean((self(x) * 50 - y) ** 2)  # large gradients, so clipping matters

    def configure_optimizers(self):
        opt_a = torch.optim.SGD(self.a.parameters(), lr=0.01)
        opt_b = torch.optim.SGD(self.b.parameters(), lr=0.01)
        sched_b = torch.optim.lr_scheduler.StepLR(opt_b, step_size=2, gamma=0.1)
        return [
            {"optimizer": opt_a, "gradient_clip_val": self.clip_a, "gradient_clip_algorithm": "norm"},
            {
                "optimizer": opt_b,
                "lr_scheduler": sched_b,
                "gradient_clip_val": self.clip_b,
                "gradient_clip_algorithm": self.algo_b,
            },
        ]


class TinyGAN(TrainingModule):
    """Manual optimisation: a generator maps noise to 1-D samples, a discriminator tells them from N(3, 1)."""

    automatic_optimization = False

    def __init__(self):
        super().__init__()
        self.generator = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        self.discriminator = nn.Sequential(nn.Linear(1, 16), nn.ReLU(), nn.Linear(16, 1))
        self.g_steps = 0
        self.d_steps = 0
        self.d_saw_generator_grads: bool | None = None

    def forward(self, z):
        return self.generator(z)

    def training_step(self, batch, batch_idx):
        real = batch[0][:, :1] * 0.0 + 3.0 + torch.randn(batch[0].shape[0], 1)
        opt_g, opt_d = self.optimizers()
        bce = nn.functional.binary_cross_entropy_with_logits
        z = torch.randn(real.shape[0], 4)
        # discriminator update
        opt_g.zero_grad()
        opt_d.toggle()
        fake = self(z).detach()
        d_loss = bce(self.discriminator(real), torch.ones_like(real)) + bce(
            self.discriminator(fake), torch.zeros_like(fake)
        )
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        self.d_saw_generator_grads = any(p.grad is not None for p in self.generator.parameters())
        opt_d.step()
        opt_d.untoggle()
        self.d_steps += 1
        # generator update
        opt_g.toggle()
        g_loss = bce(self.discriminator(self(z)), torch.ones_like(real))
        opt_g.zero_grad()
        self.manual_backward(g_loss)
        self.clip_gradients(opt_g, gradient_clip_val=1.0)
        opt_g.step()
        opt_g.untoggle()
        self.g_steps += 1
        self.log("d_loss", d_loss.detach())
        self.log("g_loss", g_loss.detach())
        return None

    def configure_optimizers(self):
        return [
            torch.optim.Adam(self.generator.parameters(), lr=1e-2),
            torch.optim.Adam(self.discriminator.parameters(), lr=1e-2),
        ]


def params_of(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone().cpu() for k, v in module.state_dict().items()}
