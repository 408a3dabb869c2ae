"""The one pinball loss: hand-computed values, and the same figures from NumPy and torch."""

import numpy as np
import pytest

from ipa_airflow.forecasting.loss import pinball_loss


def test_a_miss_weighs_q_and_a_margin_one_minus_q():
    # peaks 10, 10, 20 forecast 12, 9, 20 as their 0.9 quantile: a margin of 2, a miss of 1, exact
    loss = pinball_loss(np.array([12.0, 9.0, 20.0]), np.array([10.0, 10.0, 20.0]), 0.9)
    assert loss == pytest.approx((0.1 * 2 + 0.9 * 1 + 0.0) / 3)
    # relative to each peak: the same errors divided by 10, 10 and 20
    relative = pinball_loss(np.array([12.0, 9.0]), np.array([10.0, 10.0]), 0.9, scale=np.array([10.0, 10.0]))
    assert relative == pytest.approx((0.1 * 0.2 + 0.9 * 0.1) / 2)


def test_one_quantile_per_head_broadcasts_over_the_last_axis():
    actual = np.array([[10.0], [20.0]])
    forecast = np.array([[9.0, 11.0], [22.0, 18.0]])  # heads at 0.5 and 0.9
    q = np.array([0.5, 0.9])
    per_term = [[0.5 * 1, 0.1 * 1], [0.5 * 2, 0.9 * 2]]
    assert pinball_loss(forecast, actual, q) == pytest.approx(np.mean(per_term))


def test_torch_tensors_get_the_same_figure_and_a_gradient():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    actual = rng.uniform(5, 15, 64).astype(np.float32)
    forecast = rng.uniform(5, 15, (64, 3)).astype(np.float32)
    q = np.array([0.5, 0.9, 0.99], dtype=np.float32)
    f_t = torch.tensor(forecast, requires_grad=True)
    loss_t = pinball_loss(f_t, torch.tensor(actual)[:, None], torch.tensor(q), scale=4.0)
    loss_np = pinball_loss(forecast, actual[:, None], q, scale=np.float32(4.0))
    assert float(loss_t.detach()) == pytest.approx(float(loss_np), rel=1e-6)
    loss_t.backward()
    # d/df: -q / scale where the peak came above, (1 - q) / scale where it stayed below, over n terms
    above = actual[:, None] > forecast
    expected = np.where(above, -q, 1 - q) / 4.0 / forecast.size
    assert np.allclose(f_t.grad.numpy(), expected, atol=1e-9)
