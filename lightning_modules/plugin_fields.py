"""Init arguments holding plugin objects stay out of the saved hyperparameters (the checkpoint and the logger).

Each class names its own such arguments once, in a `plugin_fields` class attribute; `drop_plugin_fields` removes the
union over the class hierarchy. LightningCLI still records them in the run's config, and the objects keep their own
state in the checkpoint where they have any, so `torch.load(weights_only=True)` reads every checkpoint.
"""

from __future__ import annotations

import lightning as L


def drop_plugin_fields(module: L.LightningModule) -> None:
    """Remove every argument named in a `plugin_fields` of the module's classes from `hparams` and `hparams_initial`."""
    fields = {field for cls in type(module).__mro__ for field in vars(cls).get("plugin_fields", ())}
    module.remove_ignored_hparams(sorted(fields))
    for field in fields:  # and from the copy loggers record (Lightning has no call for it)
        module._hparams_initial.pop(field, None)
