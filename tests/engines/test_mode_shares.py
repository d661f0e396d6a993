"""Mode shares: samples of a mixture split like its weights; particles stuck in one mode do not."""
import numpy as np

from engines import data as D
from engines.mode_shares import component_shares


def test_samples_of_the_mixture_split_like_its_weights():
    mix = D.gmm()                                         # weights 0.8 / 0.2, far apart
    x = mix.sample(20000, seed=0).numpy()
    shares = component_shares(mix, x)
    assert np.allclose(shares, [0.8, 0.2], atol=0.01)
    stuck = np.concatenate([x[:100], np.full((10, 2), np.nan)])
    one = component_shares(mix, mix.means.numpy()[[0, 0, 0, 1]])
    assert np.allclose(one, [0.75, 0.25])
    assert np.isclose(component_shares(mix, stuck).sum(), 1.0)      # NaN rows are left out
    assert np.isnan(component_shares(mix, np.full((3, 2), np.nan))).all()
