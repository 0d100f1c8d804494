"""Growing a trained generator wider without changing what it computes (function-preserving
growth, Net2WiderNet of Chen, Goodfellow and Shlens, "Net2Net", ICLR 2016): a generator
trained at ngf 16 starts a run at ngf 32 from its own output instead of from noise.

Every channel of the wider generator's layers keeps its index; the channels added after
them start from the wider model's own initialisation, and every weight from an added
channel into a kept one starts at zero, so the kept channels, and the waveform, compute
exactly what they did (the variant of Net2WiderNet that zeroes the new fan-out instead of
splitting a copied unit's: no symmetry to break). Training then moves the zeros.
"""

from __future__ import annotations

import numpy as np

from tf_melgan.convs import conv_layers


def widen_into(small, large):
    """Copies generator `small` into `large`, a built generator of the same architecture
    with as many or more channels in every layer (a larger ngf), so that `large` computes
    `small`'s output. Weight-normed convs only (the norm of a kept output channel must not
    see the new inputs: their weights are zero). Returns `large`."""
    if small.upsampling != "nearest" or large.upsampling != "nearest":
        raise ValueError("widening supports upsampling='nearest' only (a transposed conv's "
                         "weight norm runs over its outputs, which widening changes)")
    if not (small.weight_norm and large.weight_norm):
        raise ValueError("widening needs weight-normed generators on both sides")
    fields = ("n_mels", "ratios", "n_residual_layers", "activation")
    differ = [f for f in fields if getattr(small, f) != getattr(large, f)]
    if differ or large.ngf < small.ngf:
        raise ValueError(f"cannot widen ngf {small.ngf} into ngf {large.ngf}"
                         + (f" (different {', '.join(differ)})" if differ else ""))
    pairs = [(s, w) for a, b in zip(conv_layers(small) + small.snakes(),
                                    conv_layers(large) + large.snakes())
             for s, w in zip(a.weights, b.weights)]
    if len(pairs) != len(large.weights) or len(small.weights) != len(large.weights):
        raise ValueError("widening covers convs and Snake layers only")
    for s, w in pairs:
        new, old = np.array(w.numpy()), s.numpy()
        if old.ndim != new.ndim or any(a > b for a, b in zip(old.shape, new.shape)):
            raise ValueError(f"{s.path}: {old.shape} does not fit into {new.shape}")
        new[tuple(slice(0, n) for n in old.shape)] = old
        if new.ndim == 3:  # a kernel v [k, in, out]: added inputs into kept outputs start at 0
            new[:, old.shape[1]:, :old.shape[2]] = 0.0
        w.assign(new)
    return large
