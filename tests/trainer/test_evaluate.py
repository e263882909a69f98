import math

import torch

from trainer.evaluate import rating_metrics


def test_metrics_by_hand() -> None:
    # user 0: errors 1, 1 -> RMSE 1; user 5: error 3 -> RMSE 3
    users = torch.tensor([0, 0, 5])
    predicted = torch.tensor([4.0, 2.0, 5.0])
    actual = torch.tensor([3.0, 3.0, 2.0])
    m = rating_metrics(users, predicted, actual)
    assert math.isclose(m["rmse"], math.sqrt((1 + 1 + 9) / 3))
    assert math.isclose(m["mae"], 5 / 3)
    assert math.isclose(m["user_rmse"], (1 + 3) / 2)  # the notebook's metric weighs users equally
    assert m["n"] == 3


def test_no_ratings_gives_nan_not_an_error() -> None:
    m = rating_metrics(torch.tensor([], dtype=torch.long), torch.tensor([]), torch.tensor([]))
    assert m["n"] == 0 and math.isnan(m["rmse"])
