"""The run configuration's sections as typed dataclasses, a docstring line per field, and the
constants their checks and defaults use. Plain data, no torch."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

IMAGE_SIZES = (32, 64, 128, 256)
AUGMENT_POLICIES = ("color", "translation", "cutout")  # DiffAugment's transforms (data/augment.py)
# The neighbour-based scores need more images than their k: precision / recall (k = 3) on both
# sides, density / coverage (k = 5) on the real side.
MIN_GENERATED, MIN_REFERENCE = 4, 6
DEFAULT_STEPS = 3000  # the budget of a run given none
# Adaptive augmentation's target for the mean sign of D's logits on real images (Karras et al.
# 2020): above it D is taken to overfit, and the augmentation probability rises.
AUGMENT_TARGET = 0.6
AUGMENT_MODES = ("auto", "on", "off")

Activation = Literal["relu", "leaky_relu", "tanh", "sigmoid"]


@dataclass
class ModelConfig:
    """Generator and discriminator architecture.

    Args:
        nz: Length of the random vector z fed to the generator.
        ngf: Generator width: channels of its last hidden stage (earlier stages double it). 32
            rather than the paper's 64: at 32x32 it trains about 2.3x faster on a CPU and scores
            as well after the same minutes.
        ndf: Discriminator width: channels of its first stage (later stages double it).
        g_norm: Normalisation in the generator's hidden stages.
        d_norm: Normalisation in the discriminator ('spectral' wraps every convolution).
        g_activation: Hidden activation of the generator.
        d_activation: Hidden activation of the discriminator.
        leaky_slope: Negative slope of LeakyReLU wherever it is used.
        g_output: Output activation of the generator; pixels are scaled to match it.
        conditional: Class-conditional GAN: G modulates each hidden stage with a class-specific
            gain and bias, D scores the category with a projection head; images can then be
            generated per category (productgan generate --label).
        d_pack: PacGAN packing (Lin et al. 2018): D judges packs of this many images, all real or
            all generated, stacked along the channels, with one logit per pack; seeing several
            samples at once it notices a generator that makes too little variety, and each
            layer after the first does a pack's work once. 1 is the usual one image per logit;
            the batch size (per process) must be a multiple of it.
    """

    nz: int = 100
    ngf: int = 32
    ndf: int = 32
    g_norm: Literal["batch", "none"] = "batch"
    d_norm: Literal["batch", "none", "spectral"] = "batch"
    g_activation: Activation = "relu"
    d_activation: Activation = "leaky_relu"
    leaky_slope: float = 0.2
    g_output: Literal["tanh", "sigmoid"] = "tanh"
    conditional: bool = False
    d_pack: int = 1


@dataclass
class LossConfig:
    """The adversarial objective.

    Args:
        name: 'bce' (cross-entropy with the non-saturating generator loss), 'lsgan' (least
            squares), 'hinge', or 'wgan-gp' (Wasserstein with gradient penalty; needs a
            discriminator without BatchNorm: --model.d-norm none or spectral).
        label_smoothing: Target for real images in the bce and lsgan losses (1.0 means none).
        gp_weight: Weight of the WGAN-GP gradient penalty.
        r1_gamma: Weight of the R1 penalty on real images (0 turns it off); any loss.
        r1_every: Apply R1 every this many steps, scaled up to match (lazy regularisation).
        mode_seeking: Weight of the mode-seeking term in G's loss (0 turns it off): G is pushed
            to make images that differ as much as their latent vectors do, pairs drawn within a
            class for a conditional model.
    """

    name: Literal["bce", "lsgan", "hinge", "wgan-gp"] = "bce"
    label_smoothing: float = 1.0
    gp_weight: float = 10.0
    r1_gamma: float = 0.0
    r1_every: int = 16
    mode_seeking: float = 0.0


@dataclass
class OptimConfig:
    """Optimisers and the update schedule.

    Args:
        name: 'adam' (the DCGAN default) or 'sgd' (with momentum).
        lr_g: Generator learning rate (unset: the loss's default, see LOSS_OPTIM_DEFAULTS).
        lr_d: Discriminator learning rate (unset: the loss's default; hinge and wgan-gp let D
            learn faster than G, the two-time-scale update rule).
        beta1: Adam's first-moment decay (unset: the loss's default).
        beta2: Adam's second-moment decay (unset: the loss's default).
        momentum: SGD momentum.
        weight_decay: L2 weight decay for both networks.
        d_steps_per_g_step: Discriminator updates before each generator update (adversarial phase).
        g_steps_per_d_step: Generator updates after each discriminator update; more than one adds
            a generative phase where G learns alone against a fixed D.
        lr_decay: 'none' keeps both learning rates fixed; 'linear' takes them down to zero by the
            end of the run's budget (steps, images or minutes, whichever ends first).
    """

    name: Literal["adam", "sgd"] = "adam"
    lr_g: Optional[float] = None
    lr_d: Optional[float] = None
    beta1: Optional[float] = None
    beta2: Optional[float] = None
    momentum: float = 0.9
    weight_decay: float = 0.0
    d_steps_per_g_step: int = 1
    g_steps_per_d_step: int = 1
    lr_decay: Literal["none", "linear"] = "none"


@dataclass
class TrainConfig:
    """How the loop runs, logs and saves.

    Args:
        precision: 'auto' times this run's own training step in float32 and in the half
            precision the device offers (bfloat16; float16 with loss scaling on GPUs without
            it) and trains in the faster one whose losses stay finite; the measurement is cached
            per device and step shape, and config.yaml records the choice. 'fp32', 'bf16' or
            'fp16' (CUDA) force one.
        precision_measured: Recorded by 'auto', not a setting: the images/s measured per
            precision, the device, and whether the figures came from the cache.
        channels_last: Run convolutions in channels-last memory format.
        cudnn_benchmark: On CUDA, let cuDNN time its convolution algorithms for the run's fixed
            shapes and keep the fastest (a GPU run is not bit-reproducible either way).
        device: 'auto', 'cpu', 'cuda' or 'cuda:N'.
        ema: Keep an exponential moving average of the generator for samples and export.
        ema_half_life_images: Images over which an EMA weight decays to half.
        ema_warmup: Fraction of images seen used as the EMA half-life early on, so the average
            does not cling to the random initial weights.
        log_every: Steps between progress-bar updates and metrics.jsonl lines.
        sample_every: Steps between fixed-noise sample grids.
        checkpoint_every: Steps between checkpoints/last.pt writes.
        grid_size: Images in each sample grid (a square number looks best).
        val_size: Validation images held out of the Fashion-MNIST train set (unset: 5000, or
            as recorded in a packed dataset).
        split_seed: Seed of the train / validation split, kept apart from the run seed so runs
            with different seeds see the same split (unset: 0, or as recorded).
        threads: CPU threads for torch; 0 decides at the start of the run, by measurement on a busy
            machine (train/calibration.py), and records the count here in place of 0.
        eval_every: Steps between validation scores (fid_productgan of eval_n generated images
            against the validation split); 0 turns validation off. The best score keeps
            checkpoints/best.pt, and the export follows it.
        eval_n: Generated images per validation score.
        early_stop_patience: Stop after this many validation scores without a gain (0: never).
        compile: Compile G and D with torch.compile (slow start, faster steps where it helps;
            see benchmarks/throughput.py).
        cuda_graph: On a CUDA GPU, run the training step as one CUDA graph (its kernels
            launched at once instead of one by one), checked against the eager step before it
            is used: 'auto' wherever the step can be graphed (one process, no float16 scaler,
            no gradient penalty, no learning-rate decay, no --train.compile), 'on' to insist
            (an error where it cannot be), 'off' never.
        sync_batchnorm: Under torchrun, share BatchNorm statistics across processes (for small
            per-GPU batches); off by default, as each rank's batch is already a fair sample.
        augment: DiffAugment: D sees real and generated images through the same random
            transforms (augment_policy), which keeps it from memorising a small dataset. 'auto'
            (the default): adaptive, each transform reaching each image with a probability that
            starts at 0 and follows D's overfitting (train/augmentation.py); 'on': every image;
            'off': none. true and false, as older runs recorded them, mean 'on' and 'off'.
        augment_p: A fixed probability (0 to 1) for each transform and image, in place of the
            mode's: every image for 'on', the adaptive one for 'auto'. Unset: the mode's.
        augment_target: The mean sign of D's logits on real images that adaptive augmentation
            keeps (0.6 as in the paper): a lower target augments sooner.
        init_from: Start G, D and the weight average from another run's checkpoint: RUN (its
            last.pt) or RUN:best (train/init_from.py); the architecture and image size must
            match, categories are matched by name, and a new one starts from the mean of the
            others. A new run only: a resume continues from its own checkpoint.
        freeze_d: Keep the first K blocks of D as they are (FreezeD, Mo et al. 2020), for
            fine-tuning on few images; 0 trains every block.
        init_source: Recorded by init_from, not a setting: the source run, its checkpoint, step
            and SHA-256, and what was adapted (categories added, channels).
        augment_policy: Comma-separated DiffAugment transforms: color, translation, cutout.
        hflip: Mirror half of the real images at random (for products that may face either way).
        tensorboard: Also write every metrics.jsonl value to RUN_DIR/tensorboard for TensorBoard
            (needs the package: pip install 'productgan[tensorboard]').
    """

    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    precision_measured: Optional[dict] = None
    channels_last: bool = True
    cudnn_benchmark: bool = True
    device: str = "auto"
    ema: bool = True
    ema_half_life_images: int = 10_000
    ema_warmup: float = 0.05
    log_every: int = 50
    sample_every: int = 500
    checkpoint_every: int = 1000
    grid_size: int = 100
    val_size: Optional[int] = None
    split_seed: Optional[int] = None
    threads: int = 0
    eval_every: int = 0
    eval_n: int = 2000
    early_stop_patience: int = 0
    compile: bool = False
    cuda_graph: Literal["auto", "on", "off"] = "auto"
    sync_batchnorm: bool = False
    augment: Optional[bool | Literal["auto", "on", "off"]] = None
    augment_p: Optional[float] = None
    augment_target: float = AUGMENT_TARGET
    init_from: Optional[str] = None
    freeze_d: int = 0
    init_source: Optional[dict] = None
    augment_policy: str = "color,translation,cutout"
    hflip: bool = False
    tensorboard: bool = False


@dataclass
class RunConfig:
    """Everything that defines a training run.

    Args:
        data: 'fashion-mnist', a folder holding the Fashion-MNIST idx files, or a packed dataset.
        out: Run directory; by default a new runs/NNNNN-<dataset>-<size>/.
        runs_root: Where numbered run directories are created.
        image_size: Training resolution (a power of two from 32 to 256); unset means 32 for
            Fashion-MNIST and the recorded size for a packed dataset.
        batch_size: Images per discriminator step.
        steps: Stop after this many training steps (one step = one generator update).
        images: Stop after the discriminator has seen this many real images.
        minutes: Stop after this many minutes of training.
        seed: Seed of weights, noise and data order.
        preset: The named configuration this run started from (set by --preset; recorded only).
        model: Architecture.
        loss: Adversarial objective.
        optim: Optimisers and update schedule.
        train: Loop, logging and saving.
    """

    data: str = "fashion-mnist"
    out: Optional[str] = None
    runs_root: str = "runs"
    image_size: Optional[int] = None
    batch_size: int = 64
    steps: Optional[int] = None
    images: Optional[int] = None
    minutes: Optional[float] = None
    seed: int = 0
    preset: Optional[str] = None
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)


# Optimiser settings per loss that work out of the box: (lr_g, lr_d, beta1, beta2).
# bce / lsgan: the DCGAN paper's Adam 2e-4, beta1 0.5. hinge: the two-time-scale update rule
# (Heusel et al. 2017) as used with spectral norm (Miyato et al. 2018; Zhang et al. 2019):
# G 1e-4, D 4e-4, betas (0, 0.9). wgan-gp: Gulrajani et al. 2017's 1e-4, betas (0, 0.9).
LOSS_OPTIM_DEFAULTS = {
    "bce": (2e-4, 2e-4, 0.5, 0.999),
    "lsgan": (2e-4, 2e-4, 0.5, 0.999),
    "hinge": (1e-4, 4e-4, 0.0, 0.9),
    "wgan-gp": (1e-4, 1e-4, 0.0, 0.9),
}
