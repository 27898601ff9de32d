"""Keras on PyTorch: let layers whose names hold a '.' (our canonical paths, ``features.1``) build.

Keras' torch backend mirrors each layer's variables in a ``torch.nn.ParameterDict`` keyed by the
variable's path (``features.1/dw/conv/kernel``), and PyTorch refuses a parameter name with a '.':
every layer named by a canonical path fails to build (Keras 3.15). :func:`install` makes that
key ``path.replace('.', '_dot_')``. The dict only serves PyTorch's own views (``parameters()``,
``state_dict()`` of the model as an ``nn.Module``); Keras' variables, names, paths and weight
files are unchanged, and a path without a '.' keeps its key.
"""

_DOT = "_dot_"


def _key(variable):
    return variable.path.replace(".", _DOT)


def install():
    """Patch ``keras.src.backend.torch.layer.TorchLayer`` once (idempotent)."""
    import torch
    from keras.src.backend.torch.layer import TorchLayer

    if getattr(TorchLayer, "_crossframe_dot_keys", False):
        return

    def _track_variables(self):
        self._torch_params = torch.nn.ParameterDict({_key(v): v.value for v in self.variables})

    def _post_track_variable(self, variable):
        if hasattr(self, "_torch_params") and _key(variable) not in self.torch_params:
            self.torch_params[_key(variable)] = variable.value

    def _post_untrack_variable(self, variable):
        if hasattr(self, "_torch_params") and _key(variable) in self.torch_params:
            self.torch_params.pop(_key(variable))

    TorchLayer._track_variables = _track_variables
    TorchLayer._post_track_variable = _post_track_variable
    TorchLayer._post_untrack_variable = _post_untrack_variable
    TorchLayer._crossframe_dot_keys = True
