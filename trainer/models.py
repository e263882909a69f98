"""The models `trainer run --model` can train."""

from __future__ import annotations

from torch import nn


class AutoEncoder(nn.Module):
    """The seed design: a user's ratings row (n_movies wide) -> hidden layers -> the same row back.

    Sigmoid on every hidden layer, linear output (the original write-up says sigmoid; its code has
    none). With hidden=(20, 10, 20) this is the notebook's stacked autoencoder.
    """

    def __init__(self, n_items: int, hidden: tuple[int, ...]) -> None:
        super().__init__()
        widths = (n_items, *hidden)
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths, widths[1:]):
            layers += [nn.Linear(width_in, width_out), nn.Sigmoid()]
        layers.append(nn.Linear(widths[-1], n_items))
        self.net = nn.Sequential(*layers)

    def forward(self, ratings):
        return self.net(ratings)

    def predict_at(self, ratings, rows, cols):
        """forward(ratings)[rows, cols], without computing the rest of the users x movies output:
        scoring a few held-out ratings costs a fraction of a full forward pass."""
        code = self.net[:-1](ratings)
        output = self.net[-1]
        return (code.index_select(0, rows) * output.weight.index_select(0, cols)).sum(1) + output.bias.index_select(0, cols)


def build_model(name: str, n_items: int, hidden: tuple[int, ...]) -> nn.Module:
    """Both presets, "autoencoder" and "notebook", train the same network; they differ in how."""
    return AutoEncoder(n_items, hidden)
