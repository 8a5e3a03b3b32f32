"""The networks a run trains and their optimisers, built from a resolved config on one device."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch

from productgan.config import OptimConfig, RunConfig
from productgan.data import PackedDataset
from productgan.errors import UsageError
from productgan.machine import check_memory
from productgan.models import Discriminator, Generator, eval_mode, init_weights
from productgan.train.distributed import SINGLE, Context
from productgan.train.ema import EMA


@dataclass
class Networks:
    """G and D as modules (for state, penalties and the G phase), as called in the step (DDP
    wrappers under torchrun), the EMA copy of G, and one optimiser each."""

    G: Generator
    D: Discriminator
    G_step: torch.nn.Module
    D_step: torch.nn.Module
    ema: EMA | None
    opt_g: torch.optim.Optimizer
    opt_d: torch.optim.Optimizer
    d_trained: list[torch.nn.Parameter]  # D's parameters that learn (all but --freeze-d's blocks)

    def train_d(self, learns: bool) -> None:
        """Turn D's gradients off for the G phase and on again; frozen blocks stay frozen."""
        for parameter in self.d_trained:
            parameter.requires_grad_(learns)


def build_networks(
    config: RunConfig, dataset: PackedDataset, device: torch.device, context: Context = SINGLE, graphed: bool = False
) -> Networks:
    """Seeded initial weights for ``dataset``'s images and classes, placed on ``device``; with
    ``graphed``, optimisers whose step a CUDA graph can capture."""
    t = config.train
    if context.enabled and t.sync_batchnorm and device.type != "cuda":
        raise UsageError(
            "--train.sync-batchnorm shares BatchNorm statistics between GPUs (PyTorch's SyncBatchNorm "
            "runs on CUDA only); drop it for processes on CPUs."
        )
    torch.manual_seed(config.seed)
    channels, size, classes = dataset.channels, dataset.image_size, dataset.num_classes
    G = Generator(config.model, size, channels, classes)
    D = Discriminator(config.model, size, channels, classes)
    init_weights(G)
    init_weights(D)
    if context.enabled and t.sync_batchnorm:
        G = torch.nn.SyncBatchNorm.convert_sync_batchnorm(G)
        D = torch.nn.SyncBatchNorm.convert_sync_batchnorm(D)
    memory_format = torch.channels_last if t.channels_last else torch.contiguous_format
    G.to(device, memory_format=memory_format)
    D.to(device, memory_format=memory_format)
    check_batch_memory(G, D, config, device, context)
    # The EMA copy is taken before compiling, so it owns its own plain forward.
    ema = EMA(G, t.ema_half_life_images, t.ema_warmup) if t.ema else None
    if t.compile:
        # In place, so the DDP wrappers, the penalties and the G phase all use compiled code.
        G.compile()
        D.compile()
    frozen = {id(p) for p in frozen_d_parameters(D, t.freeze_d)}
    for parameter in D.parameters():
        parameter.requires_grad_(id(parameter) not in frozen)
    d_trained = [p for p in D.parameters() if id(p) not in frozen]
    G_step, D_step = (_ddp(G, device), _ddp(D, device)) if context.enabled else (G, D)
    o = config.optim
    opt_g, opt_d = optimizer(G.parameters(), o, o.lr_g, graphed), optimizer(d_trained, o, o.lr_d, graphed)
    return Networks(G, D, G_step, D_step, ema, opt_g, opt_d, d_trained)


def frozen_d_parameters(D: Discriminator, blocks: int) -> list[torch.nn.Parameter]:
    """The parameters of D's first ``blocks`` strided blocks (each a convolution with its
    normalisation and activation): what --freeze-d keeps fixed."""
    frozen, block = [], -1
    for layer in D.main[:-1]:  # the last convolution is the head, never frozen
        if isinstance(layer, torch.nn.Conv2d):
            block += 1
        if block < blocks:
            frozen += list(layer.parameters())
    return frozen


# Bytes a training step keeps per float of the networks' outputs, for each image: float32 (4),
# once for the forward pass saved for backward and once for its gradient.
STEP_BYTES_PER_OUTPUT = 4 * 2


@torch.no_grad()
def activation_floats(G: Generator, D: Discriminator, nz: int, device: torch.device) -> int:
    """Floats that every layer of G and D outputs for one image (one image through G, and
    through D twice, as a step runs it on real and generated batches)."""
    counted = [0]

    def count(module, inputs, output):
        if isinstance(output, torch.Tensor) and not list(module.children()):
            counted[0] += output.numel()

    handles = [m.register_forward_hook(count) for m in (*G.modules(), *D.modules())]
    n = 2 * D.pack  # whole packs for a packing D
    labels = torch.zeros(n, dtype=torch.long, device=device) if G.num_classes else None
    try:
        # Eval mode: BatchNorm's running statistics must not see these images.
        with eval_mode(G), eval_mode(D):
            images = G(torch.zeros(n, nz, device=device), labels)
            floats_g = counted[0]
            D(images, labels)
    finally:
        for handle in handles:
            handle.remove()
    return int((floats_g + 2 * (counted[0] - floats_g)) / n)


def check_batch_memory(
    G: Generator, D: Discriminator, config: RunConfig, device: torch.device, context: Context = SINGLE
) -> None:
    """One sentence, before training, when a step at this batch size cannot fit in the device's memory."""
    local_batch = config.batch_size // context.world_size
    needed = local_batch * activation_floats(G, D, config.model.nz, device) * STEP_BYTES_PER_OUTPUT
    free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
    check_memory(needed, f"A training step at --batch-size {config.batch_size}", "lower --batch-size", free)


def optimizer(parameters, o: OptimConfig, lr: float, graphed: bool = False) -> torch.optim.Optimizer:
    """Adam or SGD for ``parameters``. ``graphed``: Adam keeps its step count on the device
    (capturable), so that a CUDA graph can replay its update; SGD needs nothing of the kind."""
    if o.name == "adam":
        return torch.optim.Adam(
            parameters,
            lr=lr,
            betas=(o.beta1, o.beta2),
            weight_decay=o.weight_decay,
            capturable=graphed,
        )
    return torch.optim.SGD(parameters, lr=lr, momentum=o.momentum, weight_decay=o.weight_decay)


def settle_optimizer(opt: torch.optim.Optimizer, graphed: bool) -> None:
    """After loading a checkpoint: the capturable setting this run needs, whatever the run that
    saved it used (a checkpoint from a graphed GPU run resumes on a CPU, and the other way), and
    Adam's step counts where that setting keeps them."""
    if not isinstance(opt, torch.optim.Adam):
        return
    for group in opt.param_groups:
        group["capturable"] = graphed
        for param in group["params"]:
            state = opt.state.get(param, {})
            if torch.is_tensor(state.get("step")):
                where = param.device if graphed else torch.device("cpu")
                state["step"] = state["step"].to(where, torch.float32)


def _ddp(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """DistributedDataParallel without buffer syncing in forward: D runs on real and fake
    batches before one backward, and re-broadcasting BatchNorm buffers between those calls
    would break autograd. Each rank keeps its own BatchNorm running statistics."""
    ddp = torch.nn.parallel.DistributedDataParallel
    ids = [device.index] if device.type == "cuda" else None
    if "forward_sync_buffers" in inspect.signature(ddp).parameters:  # torch >= 2.13 spelling
        return ddp(module, device_ids=ids, forward_sync_buffers=False)
    return ddp(module, device_ids=ids, broadcast_buffers=False)
