"""The reference trainer image: PyTorch training reported through `kubetune.trial`.

`python -m kubetune_trainer --dataset mnist|digits|simulated` trains an MLP on
MNIST (torchvision's loader) or scikit-learn's bundled digits, or replays a
learning curve chosen by the hyperparameters without importing torch, so that
thousands of cheap trials can exercise the operator.
"""
