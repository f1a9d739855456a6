"""New classes: a dataset with its own class names gets a head with those classes.

The class branch of an Ultralytics ``Detect`` head is, at every level, a few convolutions and then a 1x1
convolution with one output channel (one row of weights and one bias) per class. A new model is built from
the pretrained one's architecture with the dataset's class count, and every weight whose shape did not
change is copied (backbone, neck, box branch). The class branches are the pretrained ones, whole: only
their last convolution is replaced by one with a row per new class, and the rows of classes whose names
match a pretrained class (case-insensitively) are copied from that class's row. (Ultralytics would size the
branch's hidden width by the class count and start it afresh; keeping it keeps what it learnt.) Rows of
classes the pretrained model never saw start at zero weights and Ultralytics' prior bias, so a new class
starts rare (its prior) rather than at random scores; its weights still get gradients from the first step.
"""

from __future__ import annotations

import copy

import torch

BRANCHES = ("cv3", "one2one_cv3")  # class branches of Detect heads (one-to-one: YOLO26's end-to-end head)


def class_branches(model: torch.nn.Module) -> list[torch.nn.Sequential]:
    """Each level's class branch, the one-to-one head's included."""
    head = model.model[-1]
    return [branch for attr in BRANCHES for branch in getattr(head, attr, None) or []]


def class_convs(model: torch.nn.Module) -> list[torch.nn.Conv2d]:
    """The last convolution of each class branch: one output channel per class."""
    return [branch[-1] for branch in class_branches(model)]


def adapt_head(model: torch.nn.Module, names: dict[int, str]) -> torch.nn.Module:
    """``model`` itself when its classes are ``names``, else a new model with a head for ``names``."""
    old = dict(model.names)
    if old == names:
        return model
    from ultralytics.nn.tasks import DetectionModel

    new = DetectionModel(copy.deepcopy(model.yaml), nc=len(names), verbose=False)
    state = new.state_dict()
    state.update({k: v for k, v in model.state_dict().items() if k in state and state[k].shape == v.shape})
    new.load_state_dict(state)
    priors = [conv.bias.detach().clone() for conv in class_convs(new)]  # [nc] each: Ultralytics' initial bias

    by_name = {n.lower(): i for i, n in old.items()}
    kept = {j: by_name[n.lower()] for j, n in names.items() if n.lower() in by_name}  # new row -> pretrained row
    rows_new, rows_old = torch.tensor(list(kept), dtype=torch.long), torch.tensor(list(kept.values()), dtype=torch.long)
    for attr in BRANCHES:  # the pretrained class branches, whole
        if getattr(model.model[-1], attr, None) is not None:
            setattr(new.model[-1], attr, copy.deepcopy(getattr(model.model[-1], attr)))
    with torch.no_grad():
        for branch, prior in zip(class_branches(new), priors):
            pretrained = branch[-1]
            conv = torch.nn.Conv2d(pretrained.in_channels, len(names), 1)
            conv.weight.zero_()
            conv.bias.copy_(prior)
            conv.weight[rows_new] = pretrained.weight[rows_old]  # [K, C, 1, 1]
            conv.bias[rows_new] = pretrained.bias[rows_old]
            branch[-1] = conv
    new.names, new.args = dict(names), model.args
    print(
        f"classes: {len(names)} in the data, {len(kept)} of them kept from the pretrained model's {len(old)} "
        f"({', '.join(names[j] for j in list(kept)[:5])}{', ...' if len(kept) > 5 else ''}); new head"
    )
    return new
