"""Defaults that reach quality in seconds on a slow 2-core CPU (issue 8, item 6).

The goal is stated for a machine 3x slower than the development one: the default DDPM on moons at
<= 1.5x iid after 5 s of `train --seconds 5`. Wall-clock tests are flaky on a shared CI machine, so
the test trains a STEP budget: the steps the default makes in 5 s there. Measured with
`python main.py bench` (hidden 64, batch 256), the default costs 0.38 of a step of the former
default (hidden 128, batch 1024: 309 steps/s here with no load, so ~100 steps/s there): ~270
steps/s there, 1350 steps in 5 s. Sampling cost is checked as multiply-adds against the former
default, which took 2.8 s for 8000 points there; the goal is 2 s.
Images (item 7): on a CPU the half-width U-Net (see engines.nets.image_net_for).
"""
import math

import torch
from torch import nn

from engines.config import RunConfig
from engines.families.ddpm import DDPM, DDPMConfig
from engines.run import Run

STEPS_IN_5S_ON_THE_SLOW_MACHINE = 1300


def test_default_ddpm_reaches_1p5x_iid_within_the_slow_machines_5_seconds_of_steps():
    run = Run(RunConfig(dataset="moons", family="ddpm"))
    assert run.cfg.train.batch == 256 and run.family.net.net[0].out_features == 64
    run.train(STEPS_IN_5S_ON_THE_SLOW_MACHINE)
    ratio = run.evaluate(run.sample(2000, seed=100))["energy_distance_x_iid"]
    assert ratio <= 1.5, ratio


def linear_macs(net: nn.Module) -> int:
    """Multiply-adds of one forward pass for one example through the net's Linear layers."""
    return sum(m.in_features * m.out_features for m in net.modules() if isinstance(m, nn.Linear))


def test_default_ddpm_samples_8000_points_within_2_seconds_of_the_slow_machine():
    """Ancestral sampling is T forward passes: its cost scales with T x multiply-adds per point. The
    former default (hidden 128, T=100) took 2.8 s for 8000 points on the slow machine."""
    new = DDPM(DDPMConfig(), (2,), "cpu")
    old = DDPM(DDPMConfig(hidden=128), (2,), "cpu")
    assert new.cfg.T == old.cfg.T
    seconds = 2.8 * linear_macs(new.net) / linear_macs(old.net)
    assert seconds <= 2.0 * 0.8, seconds              # with a 20% margin for per-call overhead


def test_the_image_default_is_sized_for_the_device():
    """Images: the half-width U-Net on a CPU (2x the steps/s), the full U-Net where a GPU is (auto);
    the pixel MLP on request."""
    from engines.image_nets import UNet
    from engines.nets import FlatConditionalMLP, count_parameters, image_net_for
    assert image_net_for("auto", "cpu") == "unet_small" and image_net_for("auto", "cuda") == "unet"
    cpu = DDPM(DDPMConfig(), (1, 8, 8), "cpu")
    full = DDPM(DDPMConfig(image_net="unet"), (1, 8, 8), "cpu")
    assert isinstance(cpu.net, UNet) and cpu.net.conv_in.out_channels == 16 and full.net.conv_in.out_channels == 32
    assert count_parameters(cpu.net) < count_parameters(full.net) / 3
    mlp = DDPM(DDPMConfig(image_net="mlp"), (1, 8, 8), "cpu")
    assert isinstance(mlp.net, FlatConditionalMLP)
    x, c = torch.randn(4, 1, 8, 8), torch.rand(4)
    for fam in (cpu, mlp):
        assert fam.net(x, c).shape == x.shape
        assert math.isfinite(float(fam.loss(torch.rand(16, 1, 8, 8) * 2 - 1)[0].detach()))
